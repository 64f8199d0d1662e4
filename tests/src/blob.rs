//! Drives the `blob` guest (`trellis:providers/blob-probe`): one function per probe call, and
//! [`drive_blobs`], the whole exercise every correct `wasi:blobstore` passes, built-in or not.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use trellis_runtime::{Runtime, Val};

pub const BLOB_PROBE: &str = "trellis:providers/blob-probe@0.1.0";

/// Runs the blob probe's `function` on component `id`: the `ok` payload, or the error the
/// guest saw (an invocation that traps is an error too).
pub async fn blob(
    runtime: &Runtime,
    id: &str,
    function: &str,
    params: &[Val],
) -> Result<Val, String> {
    let mut out = runtime
        .invoke(id, BLOB_PROBE, function, params, None)
        .await
        .map_err(|e| format!("trap: {e:#}"))?;
    match out.remove(0) {
        Val::Result(Ok(payload)) => Ok(payload.map_or(Val::Bool(true), |p| *p)),
        Val::Result(Err(Some(error))) => match *error {
            Val::String(text) => Err(text),
            other => panic!("unexpected error {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
}

pub fn byte_vals(data: &[u8]) -> Val {
    Val::List(data.iter().map(|b| Val::U8(*b)).collect())
}

pub async fn blob_write(
    runtime: &Runtime,
    id: &str,
    at: (&str, &str),
    data: &[u8],
) -> Result<(), String> {
    let params = [
        Val::String(at.0.into()),
        Val::String(at.1.into()),
        byte_vals(data),
    ];
    blob(runtime, id, "write", &params).await.map(drop)
}

pub async fn blob_read(runtime: &Runtime, id: &str, at: (&str, &str)) -> Result<Vec<u8>, String> {
    let params = [Val::String(at.0.into()), Val::String(at.1.into())];
    match blob(runtime, id, "read", &params).await? {
        Val::List(items) => Ok(items
            .iter()
            .map(|item| match item {
                Val::U8(b) => *b,
                other => panic!("not a byte: {other:?}"),
            })
            .collect()),
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn blob_list(
    runtime: &Runtime,
    id: &str,
    container: &str,
) -> Result<Vec<String>, String> {
    match blob(runtime, id, "list-names", &[Val::String(container.into())]).await? {
        Val::List(items) => Ok(items
            .iter()
            .map(|item| match item {
                Val::String(s) => s.clone(),
                other => panic!("not a string: {other:?}"),
            })
            .collect()),
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn blob_delete(runtime: &Runtime, id: &str, at: (&str, &str)) -> Result<(), String> {
    let params = [Val::String(at.0.into()), Val::String(at.1.into())];
    blob(runtime, id, "delete", &params).await.map(drop)
}

/// 1.5 MiB that no chunking lines up with.
pub fn big_object() -> Vec<u8> {
    (0..(3 << 19) as u32).map(|i| (i % 251) as u8).collect()
}

/// Drives component `id` through everything the probe does, in container `photos`, asserting
/// each answer: writes (a small object and a multi-chunk one), reads back, lists, deletes, and
/// names that try to escape or do not exist. Returns how long the big write and read took.
pub async fn drive_blobs(runtime: &Runtime, id: &str) -> (Duration, Duration) {
    let big = big_object();
    blob_write(runtime, id, ("photos", "c.txt"), b"see")
        .await
        .unwrap();
    let started = Instant::now();
    blob_write(runtime, id, ("photos", "big/data.bin"), &big)
        .await
        .unwrap();
    let wrote = started.elapsed();
    let started = Instant::now();
    let read = blob_read(runtime, id, ("photos", "big/data.bin"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        read == big,
        "read {} bytes back, not the {} written",
        read.len(),
        big.len()
    );
    assert_eq!(
        blob_read(runtime, id, ("photos", "c.txt")).await.unwrap(),
        b"see"
    );
    assert_eq!(
        blob_list(runtime, id, "photos").await.unwrap(),
        ["big/data.bin", "c.txt"]
    );
    blob_delete(runtime, id, ("photos", "c.txt")).await.unwrap();
    assert_eq!(
        blob_list(runtime, id, "photos").await.unwrap(),
        ["big/data.bin"]
    );
    let missing = blob_read(runtime, id, ("photos", "c.txt"))
        .await
        .unwrap_err();
    assert_eq!(missing, "no object `c.txt` in container `photos`");
    for (container, object) in [("photos", "../escaped.txt"), ("..", "escaped.txt")] {
        let refused = blob_write(runtime, id, (container, object), b"x")
            .await
            .unwrap_err();
        assert!(
            refused.starts_with("invalid name"),
            "{container} {object}: {refused}"
        );
    }
    (wrote, took)
}

/// The `wrpc:blobstore/blobstore` functions a [`drive_blobs`] run calls, as subjects.
pub fn blob_subjects(lattice: &str, target: &str, version: &str) -> BTreeSet<String> {
    [
        "container-exists",
        "create-container",
        "get-container-info",
        "write-container-data",
        "get-object-info",
        "get-container-data",
        "list-container-objects",
        "delete-object",
    ]
    .iter()
    .map(|function| {
        format!("{lattice}.{target}.wrpc.0.0.1.wrpc:blobstore/blobstore@{version}.{function}")
    })
    .collect()
}
