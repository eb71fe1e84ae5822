//! Deployments: template.yaml and member-role.yaml deployed on moto by `tools/deploy_template.py`, which applies
//! the SAM transform, evaluates the template's Rules, creates what moto's CloudFormation skips, and checks what was
//! created. Use it to test the templates' own resources and policies, never hand-made copies of them.

use crate::{project_dir, venv_tool, Moto, INSTALL_HINT};
use serde_json::Value;
use std::process::Command;

/// Deploys template.yaml as a CloudFormation stack on this moto server with `tools/deploy_template.py`
/// (SAM transform, create the stack, check what it created), and returns the script's JSON summary. Panics
/// with the script's own messages if anything the template should create is missing or incomplete.
pub fn deploy_template(moto: &Moto, stack_name: &str, parameters: &[(&str, &str)]) -> Value {
    deploy(moto, stack_name, "template.yaml", None, parameters)
}

/// Deploys member-role.yaml into `account_id` as a StackSet would: a plain stack created there, through the
/// member's `OrganizationAccountAccessRole` (tools/deploy_template.py compares the role it created with the
/// template). Returns the script's JSON summary.
pub fn deploy_member_role(moto: &Moto, account_id: &str, parameters: &[(&str, &str)]) -> Value {
    let role = format!("arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole");
    deploy(
        moto,
        "keywatch-member",
        "member-role.yaml",
        Some(&role),
        parameters,
    )
}

fn deploy(
    moto: &Moto,
    stack_name: &str,
    template: &str,
    assume_role_arn: Option<&str>,
    parameters: &[(&str, &str)],
) -> Value {
    let python = venv_tool("python");
    let mut command = Command::new(&python);
    command
        .arg(project_dir().join("tools/deploy_template.py"))
        .args(["--endpoint", &moto.endpoint, "--stack-name", stack_name])
        .args(["--template", template])
        .current_dir(project_dir());
    if let Some(role) = assume_role_arn {
        command.args(["--assume-role-arn", role]);
    }
    for (key, value) in parameters {
        command.args(["--parameter", &format!("{key}={value}")]);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", python.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tools/deploy_template.py failed ({}) for {template} as stack {stack_name}:\n{stderr}\n{}\n\
         (exit status 2 means a missing tool: {INSTALL_HINT})",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("deploy_template.py printed no JSON summary ({e}):\n{stderr}"))
}
