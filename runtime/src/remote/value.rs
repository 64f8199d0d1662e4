//! Component values on the wire: the wRPC 0.29 encoding of a `Val` of a given `Type`, byte for
//! byte as wasmCloud 1.x hosts, `wasmcloud-provider-sdk` providers and `wit-bindgen-wrpc` code
//! write and read it.
//!
//! - `bool`, `u8` and `s8` are one byte; wider integers are LEB128 (signed for `s*`); floats are
//!   little-endian with NaN canonicalized; a `char` is its UTF-8 bytes;
//! - strings and lists are a LEB128 length, then the bytes or the elements;
//! - records and tuples are their fields in order; variants and enums a LEB128 case index,
//!   then the payload; options and results a `0`/`1` byte (`0` is `none` and `ok`), then the
//!   payload; flags a little-endian bitset of ⌈n/8⌉ bytes;
//! - a resource of an instance imported over the lattice is its opaque handle bytes,
//!   length-prefixed.
//!
//! `future`, `stream`, `error-context`, maps and fixed-length lists have no encoding here (wasmCloud sends none of
//! them as dynamic values either) and are refused with an error naming the type.

use std::fmt;

use bytes::{BufMut as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use wasmtime::component::{Resource, ResourceAny, ResourceTable, Type, Val};
use wasmtime::{AsContextMut, StoreContextMut};

use crate::ctx::InvocationCtx;

/// The table entry behind a handle of a resource imported over the lattice: its opaque bytes.
pub struct RemoteResource(pub Bytes);

/// Store data with a resource table, where remote handles live.
pub trait HasTable: 'static {
    fn table(&mut self) -> &mut ResourceTable;
}

impl HasTable for InvocationCtx {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl HasTable for ResourceTable {
    fn table(&mut self) -> &mut ResourceTable {
        self
    }
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("{0} values cannot cross wRPC")]
    Unsupported(&'static str),
    #[error("the value does not match its type ({0})")]
    Mismatch(String),
    #[error("invalid encoding: {0}")]
    Invalid(String),
    /// More bytes are needed: at least this many in all, from where decoding started.
    #[error("the value ends early (needs at least {0} bytes)")]
    Incomplete(usize),
    #[error("resource handle: {0:#}")]
    Resource(wasmtime::Error),
}

fn mismatch(expected: impl fmt::Display) -> ValueError {
    ValueError::Mismatch(format!("expected {expected}"))
}

/// Appends the encoding of `value` (of type `ty`) to `out`. Encoding an `own` handle moves the
/// resource out of the store's table; a `borrow` leaves it.
pub fn encode<T: HasTable>(
    store: &mut StoreContextMut<'_, T>,
    value: &Val,
    ty: &Type,
    out: &mut BytesMut,
) -> Result<(), ValueError> {
    match (ty, value) {
        (Type::Bool, Val::Bool(v)) => out.put_u8(u8::from(*v)),
        (Type::U8, Val::U8(v)) => out.put_u8(*v),
        (Type::S8, Val::S8(v)) => out.put_i8(*v),
        (Type::U16, Val::U16(v)) => unsigned(out, u64::from(*v)),
        (Type::U32, Val::U32(v)) => unsigned(out, u64::from(*v)),
        (Type::U64, Val::U64(v)) => unsigned(out, *v),
        (Type::S16, Val::S16(v)) => signed(out, i64::from(*v)),
        (Type::S32, Val::S32(v)) => signed(out, i64::from(*v)),
        (Type::S64, Val::S64(v)) => signed(out, *v),
        (Type::Float32, Val::Float32(v)) => out.put_f32_le(if v.is_nan() { f32::NAN } else { *v }),
        (Type::Float64, Val::Float64(v)) => out.put_f64_le(if v.is_nan() { f64::NAN } else { *v }),
        (Type::Char, Val::Char(c)) => {
            let mut utf8 = [0; 4];
            out.put_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
        (Type::String, Val::String(s)) => {
            length(out, s.len())?;
            out.put_slice(s.as_bytes());
        }
        (Type::List(list), Val::List(items)) => {
            length(out, items.len())?;
            let element = list.ty();
            if element == Type::U8 {
                // Gathered first: one copy into `out` costs less than a checked put per byte.
                let mut bytes = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Val::U8(byte) => bytes.push(*byte),
                        _ => return Err(mismatch("u8")),
                    }
                }
                out.put_slice(&bytes);
            } else {
                for item in items {
                    encode(store, item, &element, out)?;
                }
            }
        }
        (Type::Record(record), Val::Record(fields)) => {
            if record.fields().len() != fields.len() {
                return Err(mismatch(format!("{} record fields", record.fields().len())));
            }
            for (field, (_, value)) in record.fields().zip(fields) {
                encode(store, value, &field.ty, out)?;
            }
        }
        (Type::Tuple(tuple), Val::Tuple(values)) => {
            if tuple.types().len() != values.len() {
                return Err(mismatch(format!("{} tuple members", tuple.types().len())));
            }
            for (ty, value) in tuple.types().zip(values) {
                encode(store, value, &ty, out)?;
            }
        }
        (Type::Variant(variant), Val::Variant(name, payload)) => {
            let (index, case) = variant
                .cases()
                .enumerate()
                .find(|(_, case)| case.name == name)
                .ok_or_else(|| mismatch(format!("a case of the variant, not `{name}`")))?;
            unsigned(out, index as u64);
            match (case.ty, payload) {
                (Some(ty), Some(payload)) => encode(store, payload, &ty, out)?,
                (None, None) => {}
                _ => return Err(mismatch(format!("the payload of case `{name}`"))),
            }
        }
        (Type::Enum(enumeration), Val::Enum(name)) => {
            let index = enumeration
                .names()
                .position(|case| case == name)
                .ok_or_else(|| mismatch(format!("a case of the enum, not `{name}`")))?;
            unsigned(out, index as u64);
        }
        (Type::Option(option), Val::Option(value)) => match value {
            None => out.put_u8(0),
            Some(value) => {
                out.put_u8(1);
                encode(store, value, &option.ty(), out)?;
            }
        },
        (Type::Result(result), Val::Result(value)) => {
            let (tag, ty, payload) = match value {
                Ok(payload) => (0, result.ok(), payload),
                Err(payload) => (1, result.err(), payload),
            };
            out.put_u8(tag);
            match (ty, payload) {
                (Some(ty), Some(payload)) => encode(store, payload, &ty, out)?,
                (None, None) => {}
                _ => return Err(mismatch("a result payload that fits its type")),
            }
        }
        (Type::Flags(flags), Val::Flags(set)) => {
            let names: Vec<&str> = flags.names().collect();
            let mut bits = vec![0u8; names.len().div_ceil(8)];
            for flag in set {
                let index = names
                    .iter()
                    .position(|name| name == flag)
                    .ok_or_else(|| mismatch(format!("a flag of the type, not `{flag}`")))?;
                bits[index / 8] |= 1 << (index % 8);
            }
            out.put_slice(&bits);
        }
        (Type::Own(_), Val::Resource(resource)) => {
            let handle: Resource<RemoteResource> = resource
                .try_into_resource(store.as_context_mut())
                .map_err(|_| ValueError::Unsupported("resources of this host"))?;
            let bytes = store
                .data_mut()
                .table()
                .delete(handle)
                .map_err(|e| ValueError::Resource(e.into()))?
                .0;
            length(out, bytes.len())?;
            out.put_slice(&bytes);
        }
        (Type::Borrow(_), Val::Resource(resource)) => {
            let handle: Resource<RemoteResource> = resource
                .try_into_resource(store.as_context_mut())
                .map_err(|_| ValueError::Unsupported("resources of this host"))?;
            let bytes = &store
                .data_mut()
                .table()
                .get(&handle)
                .map_err(|e| ValueError::Resource(e.into()))?
                .0;
            length(out, bytes.len())?;
            out.put_slice(bytes);
        }
        (ty, _) => return Err(unsupported(ty).unwrap_or_else(|| mismatch(describe(ty)))),
    }
    Ok(())
}

/// Why values of `ty` cannot cross at all, if they cannot.
fn unsupported(ty: &Type) -> Option<ValueError> {
    let name = match ty {
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        Type::ErrorContext => "error-context",
        Type::Map(_) => "map",
        Type::FixedLengthList(_) => "fixed-length list",
        _ => return None,
    };
    Some(ValueError::Unsupported(name))
}

/// The WIT name of `ty`'s kind, for messages.
fn describe(ty: &Type) -> &'static str {
    match ty {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::List(_) => "list",
        Type::FixedLengthList(_) => "fixed-length list",
        Type::Map(_) => "map",
        Type::Record(_) => "record",
        Type::Tuple(_) => "tuple",
        Type::Variant(_) => "variant",
        Type::Enum(_) => "enum",
        Type::Option(_) => "option",
        Type::Result(_) => "result",
        Type::Flags(_) => "flags",
        Type::Own(_) => "own",
        Type::Borrow(_) => "borrow",
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        Type::ErrorContext => "error-context",
    }
}

fn unsigned(out: &mut BytesMut, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

fn signed(out: &mut BytesMut, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// A length prefix: wRPC lengths are `u32`.
fn length(out: &mut BytesMut, len: usize) -> Result<(), ValueError> {
    let len = u32::try_from(len)
        .map_err(|_| ValueError::Invalid(format!("a length of {len} does not fit in u32")))?;
    unsigned(out, u64::from(len));
    Ok(())
}

/// Reads values from bytes at hand. Makes resources only through `resource`, so a decode that
/// turns out `Incomplete` can be retried when it made none.
struct Cursor<'a, 'r> {
    bytes: &'a [u8],
    at: usize,
    resource: Option<&'r mut dyn FnMut(Bytes) -> Result<ResourceAny, ValueError>>,
}

impl Cursor<'_, '_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ValueError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or_else(|| ValueError::Invalid("length overflows".into()))?;
        let taken = self
            .bytes
            .get(self.at..end)
            .ok_or(ValueError::Incomplete(end))?;
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, ValueError> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned LEB128 of at most `bits` bits.
    fn unsigned(&mut self, bits: u32) -> Result<u64, ValueError> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            let low = u64::from(byte & 0x7f);
            if shift >= bits || (bits - shift < 7 && low >> (bits - shift) != 0) {
                return Err(ValueError::Invalid(format!(
                    "varint overflows a {bits}-bit integer"
                )));
            }
            value |= low << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A signed LEB128 of at most `bits` bits.
    fn signed(&mut self, bits: u32) -> Result<i64, ValueError> {
        let mut value = 0i64;
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            if shift >= bits {
                return Err(ValueError::Invalid(format!(
                    "varint overflows a {bits}-bit integer"
                )));
            }
            value |= i64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1 << shift;
                }
                let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
                if i128::from(value) < min || i128::from(value) > max {
                    return Err(ValueError::Invalid(format!(
                        "varint overflows a {bits}-bit integer"
                    )));
                }
                return Ok(value);
            }
        }
    }

    fn length(&mut self) -> Result<usize, ValueError> {
        Ok(self.unsigned(32)? as usize)
    }

    fn index(&mut self, count: usize, what: &str) -> Result<usize, ValueError> {
        let index = self.unsigned(32)? as usize;
        if index >= count {
            return Err(ValueError::Invalid(format!("unknown {what} case {index}")));
        }
        Ok(index)
    }

    fn tag(&mut self, what: &str) -> Result<bool, ValueError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(ValueError::Invalid(format!("{what} tag {other}"))),
        }
    }

    fn char(&mut self) -> Result<char, ValueError> {
        let first = self.byte()?;
        let len = match first {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return Err(ValueError::Invalid("char is not UTF-8".into())),
        };
        self.at -= 1;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.chars().next())
            .ok_or_else(|| ValueError::Invalid("char is not UTF-8".into()))
    }

    fn value(&mut self, ty: &Type) -> Result<Val, ValueError> {
        Ok(match ty {
            Type::Bool => Val::Bool(self.tag("bool")?),
            Type::U8 => Val::U8(self.byte()?),
            Type::S8 => Val::S8(self.byte()? as i8),
            Type::U16 => Val::U16(self.unsigned(16)? as u16),
            Type::U32 => Val::U32(self.unsigned(32)? as u32),
            Type::U64 => Val::U64(self.unsigned(64)?),
            Type::S16 => Val::S16(self.signed(16)? as i16),
            Type::S32 => Val::S32(self.signed(32)? as i32),
            Type::S64 => Val::S64(self.signed(64)?),
            Type::Float32 => Val::Float32(f32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            Type::Float64 => Val::Float64(f64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            Type::Char => Val::Char(self.char()?),
            Type::String => {
                let len = self.length()?;
                let bytes = self.take(len)?;
                Val::String(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| ValueError::Invalid("string is not UTF-8".into()))?,
                )
            }
            Type::List(list) => {
                let len = self.length()?;
                let element = list.ty();
                if element == Type::U8 {
                    Val::List(self.take(len)?.iter().map(|b| Val::U8(*b)).collect())
                } else {
                    // Each element takes at least one byte: a length beyond the bytes left
                    // cannot be honest, and must not size an allocation.
                    let mut items = Vec::with_capacity(len.min(self.bytes.len() - self.at));
                    for _ in 0..len {
                        items.push(self.value(&element)?);
                    }
                    Val::List(items)
                }
            }
            Type::Record(record) => Val::Record(
                record
                    .fields()
                    .map(|field| Ok((field.name.to_string(), self.value(&field.ty)?)))
                    .collect::<Result<_, ValueError>>()?,
            ),
            Type::Tuple(tuple) => Val::Tuple(
                tuple
                    .types()
                    .map(|ty| self.value(&ty))
                    .collect::<Result<_, _>>()?,
            ),
            Type::Variant(variant) => {
                let index = self.index(variant.cases().len(), "variant")?;
                let case = variant.cases().nth(index).expect("index checked");
                let payload = match &case.ty {
                    Some(ty) => Some(Box::new(self.value(ty)?)),
                    None => None,
                };
                Val::Variant(case.name.to_string(), payload)
            }
            Type::Enum(enumeration) => {
                let index = self.index(enumeration.names().len(), "enum")?;
                Val::Enum(
                    enumeration
                        .names()
                        .nth(index)
                        .expect("index checked")
                        .into(),
                )
            }
            Type::Option(option) => Val::Option(match self.tag("option")? {
                false => None,
                true => Some(Box::new(self.value(&option.ty())?)),
            }),
            Type::Result(result) => {
                let failed = self.tag("result")?;
                let ty = if failed { result.err() } else { result.ok() };
                let payload = match ty {
                    Some(ty) => Some(Box::new(self.value(&ty)?)),
                    None => None,
                };
                Val::Result(if failed { Err(payload) } else { Ok(payload) })
            }
            Type::Flags(flags) => {
                let names: Vec<&str> = flags.names().collect();
                let bits = self.take(names.len().div_ceil(8))?;
                Val::Flags(
                    names
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| bits[i / 8] & (1 << (i % 8)) != 0)
                        .map(|(_, name)| name.to_string())
                        .collect(),
                )
            }
            Type::Own(_) | Type::Borrow(_) => {
                let len = self.length()?;
                let bytes = Bytes::copy_from_slice(self.take(len)?);
                let resource = self
                    .resource
                    .as_mut()
                    .ok_or(ValueError::Unsupported("resource"))?;
                Val::Resource(resource(bytes)?)
            }
            ty => return Err(unsupported(ty).unwrap_or_else(|| mismatch(describe(ty)))),
        })
    }
}

/// Decodes one value of each of `types` from `bytes`, which hold them all (as a whole results
/// stream does). Resources arrive as [`RemoteResource`] handles in the store's table.
pub fn decode_all<T: HasTable>(
    store: &mut StoreContextMut<'_, T>,
    bytes: &[u8],
    types: &[Type],
) -> Result<Vec<Val>, ValueError> {
    let mut resource = |bytes: Bytes| {
        let handle = store
            .data_mut()
            .table()
            .push(RemoteResource(bytes))
            .map_err(|e| ValueError::Resource(e.into()))?;
        ResourceAny::try_from_resource(handle, store.as_context_mut()).map_err(ValueError::Resource)
    };
    let mut cursor = Cursor {
        bytes,
        at: 0,
        resource: Some(&mut resource),
    };
    types.iter().map(|ty| cursor.value(ty)).collect()
}

/// Decodes one value of each of `types` from `reader` as its bytes arrive, without waiting for
/// the end of the stream (a caller sends its parameters and then, perhaps much later, ends).
/// Types with resources are refused: a served function never takes them.
pub async fn read<R: AsyncRead + Unpin>(
    reader: &mut R,
    types: &[Type],
) -> Result<Vec<Val>, ValueError> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let mut buffer = Vec::with_capacity(1024);
    let mut needed = 0;
    loop {
        while buffer.len() < needed.max(1) {
            let len = buffer.len();
            buffer.resize(len.max(needed).max(len + 4096), 0);
            let read = reader
                .read(&mut buffer[len..])
                .await
                .map_err(|e| ValueError::Invalid(format!("reading: {e}")))?;
            buffer.truncate(len + read);
            if read == 0 {
                return Err(ValueError::Invalid(
                    "the stream ended before the values did".into(),
                ));
            }
        }
        let mut cursor = Cursor {
            bytes: &buffer,
            at: 0,
            resource: None,
        };
        match types
            .iter()
            .map(|ty| cursor.value(ty))
            .collect::<Result<Vec<_>, _>>()
        {
            Err(ValueError::Incomplete(at_least)) => needed = at_least.max(buffer.len() + 1),
            done => return done,
        }
    }
}
