//! Drives the `kv` guest's `kv-probe` export (`wasi:keyvalue` store, atomics, batch) on a
//! running component, whatever serves its key-value.

use std::collections::BTreeSet;

use trellis_runtime::{Runtime, Val};

pub const KV_PROBE: &str = "trellis:providers/kv-probe@0.1.0";

/// `increment(bucket, key, 1)` on component `id`: the new count, or the error the guest saw
/// (an invocation that traps is an error too).
pub async fn increment(
    runtime: &Runtime,
    id: &str,
    bucket: &str,
    key: &str,
) -> Result<u64, String> {
    let params = [
        Val::String(bucket.into()),
        Val::String(key.into()),
        Val::U64(1),
    ];
    let out = runtime
        .invoke(id, KV_PROBE, "increment", &params, None)
        .await
        .map_err(|e| format!("{e:#}"))?;
    match &out[0] {
        Val::Result(Ok(Some(value))) => match &**value {
            Val::U64(n) => Ok(*n),
            other => panic!("unexpected {other:?}"),
        },
        Val::Result(Err(Some(error))) => Err(format!("{error:?}")),
        other => panic!("unexpected {other:?}"),
    }
}

/// `exercise(bucket)` on component `id`: what the guest saw of each operation, in order.
pub async fn exercise(runtime: &Runtime, id: &str, bucket: &str) -> Vec<String> {
    let out = runtime
        .invoke(
            id,
            KV_PROBE,
            "exercise",
            &[Val::String(bucket.into())],
            None,
        )
        .await
        .unwrap();
    match &out[0] {
        Val::Result(Ok(Some(list))) => match &**list {
            Val::List(items) => items
                .iter()
                .map(|item| match item {
                    Val::String(s) => s.clone(),
                    other => panic!("unexpected {other:?}"),
                })
                .collect(),
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("exercise failed: {other:?}"),
    }
}

/// The subjects of the translated `wrpc:keyvalue` functions a full `exercise` and `increment`
/// call on `target` in `lattice`.
pub fn translated_subjects(lattice: &str, target: &str) -> BTreeSet<String> {
    [
        ("store", "get"),
        ("store", "set"),
        ("store", "delete"),
        ("store", "exists"),
        ("store", "list-keys"),
        ("atomics", "increment"),
        ("batch", "get-many"),
        ("batch", "set-many"),
        ("batch", "delete-many"),
    ]
    .iter()
    .map(|(interface, function)| {
        format!("{lattice}.{target}.wrpc.0.0.1.wrpc:keyvalue/{interface}@0.2.0-draft.{function}")
    })
    .collect()
}
