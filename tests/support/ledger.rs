//! The ledger table in moto, as template.yaml creates it, read and changed directly (never through keywatch):
//! what a test asserts about memory across runs, and how it lets time pass without sleeping.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use keywatch::ledger::Item;

pub const TABLE: &str = "keywatch-ledger";

pub struct LedgerTable {
    pub client: aws_sdk_dynamodb::Client,
    pub name: String,
}

/// A raw item, as DynamoDB stores it.
pub type RawItem = HashMap<String, AttributeValue>;

impl LedgerTable {
    /// Creates the table with the template's key schema, in the account `config` signs for.
    pub async fn create(config: &SdkConfig) -> LedgerTable {
        let client = aws_sdk_dynamodb::Client::new(config);
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition")
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key schema")
        };
        client
            .create_table()
            .table_name(TABLE)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("account_id"))
            .attribute_definitions(attribute("access_key_id"))
            .key_schema(key("account_id", KeyType::Hash))
            .key_schema(key("access_key_id", KeyType::Range))
            .send()
            .await
            .expect("create the ledger table");
        LedgerTable {
            client,
            name: TABLE.to_string(),
        }
    }

    /// Every item, as stored, in key order.
    pub async fn raw(&self) -> Vec<RawItem> {
        let mut items: Vec<RawItem> = self
            .client
            .scan()
            .table_name(&self.name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .expect("scan the ledger");
        let key = |item: &RawItem, name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        items.sort_by_key(|item| (key(item, "account_id"), key(item, "access_key_id")));
        items
    }

    /// The table `name` in the account `config` signs for, as a stack created it.
    pub fn open(config: &SdkConfig, name: &str) -> LedgerTable {
        LedgerTable {
            client: aws_sdk_dynamodb::Client::new(config),
            name: name.to_string(),
        }
    }

    /// One key's item as stored, its attributes by the names DynamoDB holds: what a renamed field would change.
    /// Each attribute as (type, value): `("S", "open")`, `("N", "1")`, `("BOOL", "true")`.
    pub async fn raw_attributes(
        &self,
        access_key_id: &str,
    ) -> std::collections::BTreeMap<String, (&'static str, String)> {
        let raw = self
            .raw()
            .await
            .into_iter()
            .find(|item| {
                item.get("access_key_id")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some(access_key_id)
            })
            .unwrap_or_else(|| panic!("no ledger item for {access_key_id}"));
        raw.into_iter()
            .map(|(name, value)| {
                let typed = match &value {
                    AttributeValue::S(s) => ("S", s.clone()),
                    AttributeValue::N(n) => ("N", n.clone()),
                    AttributeValue::Bool(b) => ("BOOL", b.to_string()),
                    AttributeValue::Null(_) => ("NULL", String::new()),
                    other => ("other", format!("{other:?}")),
                };
                (name, typed)
            })
            .collect()
    }

    /// Every finding's item, read as keywatch reads it (the accounts' lease items left out).
    pub async fn items(&self) -> Vec<Item> {
        self.raw()
            .await
            .into_iter()
            .filter(|raw| !keywatch::ledger::table::is_lease(raw))
            .map(|raw| serde_dynamo::from_item(raw).expect("a ledger item keywatch can read"))
            .collect()
    }

    /// The item of one key.
    pub async fn item(&self, access_key_id: &str) -> Item {
        self.items()
            .await
            .into_iter()
            .find(|item| item.access_key_id == access_key_id)
            .unwrap_or_else(|| panic!("no ledger item for {access_key_id}"))
    }

    /// Lets `days` pass for the ledger: every time it holds moves back. How tests wait out a notice period.
    pub async fn age(&self, days: i64) {
        for mut item in self.items().await {
            let back = time::Duration::days(days);
            item.first_seen_at -= back;
            for time in [
                &mut item.first_alerted_at,
                &mut item.last_alerted_at,
                &mut item.deactivated_at,
                &mut item.resolved_at,
                &mut item.notice_at,
                &mut item.deactivate_on,
                &mut item.deactivating_at,
            ]
            .into_iter()
            .flatten()
            {
                *time -= back;
            }
            self.client
                .put_item()
                .table_name(&self.name)
                .set_item(Some(serde_dynamo::to_item(&item).expect("an item")))
                .send()
                .await
                .expect("put the aged item");
        }
    }
}
