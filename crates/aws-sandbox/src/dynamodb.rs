//! The DynamoDB subset a leader lease needs, over `awsJson1_0`: `POST /`,
//! `X-Amz-Target: DynamoDB_20120810.<Op>`; PutItem, GetItem, DeleteItem on tables keyed by the
//! string attribute `pk` (any table name exists, empty). Condition expressions: terms joined by
//! `OR`, each `attribute_not_exists(a)`, `a = :v` or `a < :v` (`#n` names resolved). Errors are
//! HTTP 400 `{"__type": "com.amazonaws.dynamodb.v20120810#Code", "message"}`, with the old `Item`
//! on `ConditionalCheckFailedException` when asked (`ReturnValuesOnConditionCheckFailure`).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::reply::Reply;

/// The `X-Amz-Target` prefix of every DynamoDB operation.
pub(crate) const TARGET_PREFIX: &str = "DynamoDB_20120810.";

/// Items by table, then by `pk`.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    items: HashMap<String, HashMap<String, Map<String, Value>>>,
}

impl Tables {
    /// The items of `table`, ordered by `pk` (none for a table never written).
    pub(crate) fn items(&self, table: &str) -> Vec<Value> {
        let Some(items) = self.items.get(table) else {
            return Vec::new();
        };
        let mut keys: Vec<&String> = items.keys().collect();
        keys.sort();
        keys.into_iter()
            .map(|k| Value::Object(items[k].clone()))
            .collect()
    }
}

/// A DynamoDB error before it becomes a reply.
struct DdbError {
    code: &'static str,
    message: String,
    item: Option<Map<String, Value>>,
}

fn invalid(message: impl Into<String>) -> DdbError {
    DdbError {
        code: "ValidationException",
        message: message.into(),
        item: None,
    }
}

/// Answers one DynamoDB operation.
pub(crate) fn handle(operation: &str, body: &[u8], tables: &mut Tables) -> Reply {
    let request: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return error(&DdbError {
                code: "SerializationException",
                message: "the request body is not a JSON object".into(),
                item: None,
            });
        }
    };
    let result = match operation {
        "PutItem" => put_item(&request, tables),
        "GetItem" => get_item(&request, tables),
        "DeleteItem" => delete_item(&request, tables),
        _ => Err(DdbError {
            code: "UnknownOperationException",
            message: format!("the sandbox does not serve DynamoDB {operation}"),
            item: None,
        }),
    };
    match result {
        Ok(body) => Reply::json(200, &body),
        Err(e) => error(&e),
    }
}

/// A throttled DynamoDB call.
pub(crate) fn throttled() -> Reply {
    error(&DdbError {
        code: "ThrottlingException",
        message: "Rate of requests exceeds the allowed throughput.".into(),
        item: None,
    })
}

/// A DynamoDB server fault.
pub(crate) fn server_error() -> Reply {
    error(&DdbError {
        code: "InternalServerError",
        message: "Internal server error".into(),
        item: None,
    })
}

fn error(e: &DdbError) -> Reply {
    let status = if e.code == "InternalServerError" {
        500
    } else {
        400
    };
    let mut body = json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{}", e.code),
        "message": e.message,
    });
    if let Some(item) = &e.item {
        body["Item"] = Value::Object(item.clone());
    }
    Reply::json(status, &body).error_type(e.code)
}

fn table<'a>(
    request: &Map<String, Value>,
    tables: &'a mut Tables,
) -> Result<&'a mut HashMap<String, Map<String, Value>>, DdbError> {
    let name = request
        .get("TableName")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("TableName is required"))?;
    Ok(tables.items.entry(name.to_string()).or_default())
}

/// The `pk` string of an item or key.
fn pk(map: Option<&Value>) -> Result<String, DdbError> {
    map.and_then(|m| m.get("pk"))
        .and_then(|v| v.get("S"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| invalid("One of the required keys was not given a value: pk (S)"))
}

fn put_item(request: &Map<String, Value>, tables: &mut Tables) -> Result<Value, DdbError> {
    let item = request
        .get("Item")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("Item is required"))?
        .clone();
    let key = pk(request.get("Item"))?;
    let items = table(request, tables)?;
    let old = items.get(&key).cloned();
    check(request, old.as_ref())?;
    items.insert(key, item);
    Ok(old_values(request, "ReturnValues", old))
}

fn get_item(request: &Map<String, Value>, tables: &mut Tables) -> Result<Value, DdbError> {
    let key = pk(request.get("Key"))?;
    let items = table(request, tables)?;
    Ok(match items.get(&key) {
        Some(item) => json!({ "Item": item }),
        None => json!({}),
    })
}

fn delete_item(request: &Map<String, Value>, tables: &mut Tables) -> Result<Value, DdbError> {
    let key = pk(request.get("Key"))?;
    let items = table(request, tables)?;
    let old = items.get(&key).cloned();
    check(request, old.as_ref())?;
    items.remove(&key);
    Ok(old_values(request, "ReturnValues", old))
}

fn old_values(
    request: &Map<String, Value>,
    member: &str,
    old: Option<Map<String, Value>>,
) -> Value {
    match (request.get(member).and_then(Value::as_str), old) {
        (Some("ALL_OLD"), Some(old)) => json!({ "Attributes": old }),
        _ => json!({}),
    }
}

/// Evaluates `ConditionExpression` against the stored item; a false condition is
/// `ConditionalCheckFailedException`.
fn check(request: &Map<String, Value>, old: Option<&Map<String, Value>>) -> Result<(), DdbError> {
    let Some(expr) = request.get("ConditionExpression").and_then(Value::as_str) else {
        return Ok(());
    };
    let names = request
        .get("ExpressionAttributeNames")
        .and_then(Value::as_object);
    let values = request
        .get("ExpressionAttributeValues")
        .and_then(Value::as_object);
    let name = |n: &str| -> Result<String, DdbError> {
        if n.starts_with('#') {
            names
                .and_then(|m| m.get(n))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| invalid(format!("An expression attribute name used in the document path is not defined; attribute name: {n}")))
        } else {
            Ok(n.to_string())
        }
    };
    let value = |v: &str| -> Result<Value, DdbError> {
        values
            .and_then(|m| m.get(v))
            .cloned()
            .ok_or_else(|| invalid(format!("An expression attribute value used in expression is not defined; attribute value: {v}")))
    };
    let mut holds = false;
    for term in expr.split(" OR ") {
        let term = term.trim();
        let ok = if let Some(inner) = term
            .strip_prefix("attribute_not_exists(")
            .and_then(|t| t.strip_suffix(')'))
        {
            let attr = name(inner.trim())?;
            old.is_none_or(|o| !o.contains_key(&attr))
        } else if let Some((a, v)) = term.split_once(" = ") {
            let attr = name(a.trim())?;
            let v = value(v.trim())?;
            old.and_then(|o| o.get(&attr)) == Some(&v)
        } else if let Some((a, v)) = term.split_once(" < ") {
            let attr = name(a.trim())?;
            let v = value(v.trim())?;
            match (old.and_then(|o| o.get(&attr)), &v) {
                (Some(x), y) => less(x, y)?,
                (None, _) => false,
            }
        } else {
            return Err(invalid(format!(
                "Invalid ConditionExpression: the sandbox does not evaluate `{term}`"
            )));
        };
        holds |= ok;
    }
    if holds {
        return Ok(());
    }
    let item = (request
        .get("ReturnValuesOnConditionCheckFailure")
        .and_then(Value::as_str)
        == Some("ALL_OLD"))
    .then(|| old.cloned())
    .flatten();
    Err(DdbError {
        code: "ConditionalCheckFailedException",
        message: "The conditional request failed".into(),
        item,
    })
}

/// `<` on two attribute values of the same type (N numerically, S as strings).
fn less(x: &Value, y: &Value) -> Result<bool, DdbError> {
    let num = |v: &Value| {
        v.get("N")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<f64>().ok())
    };
    let (tx, ty) = (
        x.get("S").and_then(Value::as_str),
        y.get("S").and_then(Value::as_str),
    );
    match (num(x), num(y), tx, ty) {
        (Some(a), Some(b), _, _) => Ok(a < b),
        (_, _, Some(a), Some(b)) => Ok(a < b),
        // DynamoDB: a comparison of different types is false, not an error.
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(tables: &mut Tables, owner: &str, now: i64, until: i64) -> Reply {
        let body = json!({
            "TableName": "leases",
            "Item": {"pk": {"S": "l"}, "owner": {"S": owner}, "expires_at_ms": {"N": until.to_string()}},
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at_ms < :now OR #o = :me",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":now": {"N": now.to_string()}, ":me": {"S": owner}},
            "ReturnValues": "ALL_OLD",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        });
        handle("PutItem", body.to_string().as_bytes(), tables)
    }

    #[test]
    fn the_lease_condition_admits_the_first_the_owner_and_after_expiry_anyone() {
        let mut t = Tables::default();
        assert_eq!(put(&mut t, "a", 0, 100).status, 200);
        assert_eq!(put(&mut t, "a", 50, 150).status, 200);
        let refused = put(&mut t, "b", 149, 200);
        assert_eq!(refused.status, 400);
        let body: Value = serde_json::from_slice(&refused.body).unwrap();
        assert_eq!(
            body["__type"],
            "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"
        );
        assert_eq!(body["Item"]["owner"]["S"], "a");
        let won = put(&mut t, "b", 151, 250);
        assert_eq!(won.status, 200);
        let body: Value = serde_json::from_slice(&won.body).unwrap();
        assert_eq!(body["Attributes"]["owner"]["S"], "a");
    }

    #[test]
    fn an_unknown_expression_is_a_validation_error() {
        let mut t = Tables::default();
        let body = json!({
            "TableName": "leases",
            "Item": {"pk": {"S": "l"}},
            "ConditionExpression": "begins_with(pk, :x)",
        });
        let r = handle("PutItem", body.to_string().as_bytes(), &mut t);
        assert_eq!((r.status, r.error_type), (400, Some("ValidationException")));
    }
}
