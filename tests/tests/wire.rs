//! The runtime's wRPC value bridge (`trellis_runtime::value`) against wRPC itself.
//!
//! - Random values of randomly generated WIT types (records, variants, enums, flags, tuples,
//!   lists, options, results, every primitive; strings with multi-byte characters, empty and
//!   large lists) survive encode → decode, as a whole and arriving in random chunks, and
//!   re-encode to the same bytes.
//! - For Rust types whose wRPC 0.29 codecs `wrpc-transport` and `wit-bindgen-wrpc` provide (the
//!   codecs of wasmCloud providers), random values encoded by wRPC decode in Trellis and encode
//!   back to the same bytes, which wRPC decodes to the same value.

use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{Decoder as _, Encoder as _};
use trellis_runtime::value::{self, ValueError};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ResourceTable, Type, Val};
use wasmtime::{Engine, Store};
use wrpc_transport::frame::{Incoming, Outgoing};
use wrpc_transport::{Decode, Encode};

/// A WIT type, as the generator builds it.
#[derive(Clone, Debug)]
enum Ty {
    Prim(&'static str),
    List(Box<Ty>),
    Option(Box<Ty>),
    Result(Option<Box<Ty>>, Option<Box<Ty>>),
    Tuple(Vec<Ty>),
    Record(Vec<Ty>),
    Variant(Vec<Option<Ty>>),
    Enum(usize),
    Flags(usize),
}

const PRIMITIVES: [&str; 13] = [
    "bool", "u8", "s8", "u16", "s16", "u32", "s32", "u64", "s64", "f32", "f64", "char", "string",
];

fn arb_ty() -> impl Strategy<Value = Ty> {
    let leaf = prop_oneof![
        6 => (0..PRIMITIVES.len()).prop_map(|i| Ty::Prim(PRIMITIVES[i])),
        1 => (1usize..12).prop_map(Ty::Enum),
        1 => prop_oneof![1usize..=8, 9usize..=16, 17usize..=32].prop_map(Ty::Flags),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| Ty::List(Box::new(t))),
            inner.clone().prop_map(|t| Ty::Option(Box::new(t))),
            (
                proptest::option::of(inner.clone()),
                proptest::option::of(inner.clone())
            )
                .prop_map(|(o, e)| Ty::Result(o.map(Box::new), e.map(Box::new))),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Ty::Tuple),
            proptest::collection::vec(inner.clone(), 1..5).prop_map(Ty::Record),
            proptest::collection::vec(proptest::option::of(inner), 1..5).prop_map(Ty::Variant),
        ]
    })
}

/// Component text declaring `ty`: nominal types (records, variants, enums, flags) are defined
/// and imported under names, as the component model requires of types in signatures.
struct Wat {
    defs: String,
    next: usize,
}

impl Wat {
    fn name(&mut self, definition: String) -> String {
        let n = self.next;
        self.next += 1;
        writeln!(self.defs, "(type $t{n} {definition})").unwrap();
        writeln!(self.defs, "(import \"t{n}\" (type $i{n} (eq $t{n})))").unwrap();
        format!("$i{n}")
    }

    fn ty(&mut self, ty: &Ty) -> String {
        match ty {
            Ty::Prim(name) => name.to_string(),
            Ty::List(t) => format!("(list {})", self.ty(t)),
            Ty::Option(t) => format!("(option {})", self.ty(t)),
            Ty::Result(ok, err) => {
                let ok = ok.as_ref().map(|t| self.ty(t)).unwrap_or_default();
                let err = err
                    .as_ref()
                    .map(|t| format!("(error {})", self.ty(t)))
                    .unwrap_or_default();
                format!("(result {ok} {err})")
            }
            Ty::Tuple(ts) => {
                let members: Vec<String> = ts.iter().map(|t| self.ty(t)).collect();
                format!("(tuple {})", members.join(" "))
            }
            Ty::Record(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .enumerate()
                    .map(|(i, t)| format!("(field \"f{i}\" {})", self.ty(t)))
                    .collect();
                self.name(format!("(record {})", fields.join(" ")))
            }
            Ty::Variant(cases) => {
                let cases: Vec<String> = cases
                    .iter()
                    .enumerate()
                    .map(|(i, t)| match t {
                        Some(t) => format!("(case \"c{i}\" {})", self.ty(t)),
                        None => format!("(case \"c{i}\")"),
                    })
                    .collect();
                self.name(format!("(variant {})", cases.join(" ")))
            }
            Ty::Enum(n) => {
                let cases: Vec<String> = (0..*n).map(|i| format!("\"e{i}\"")).collect();
                self.name(format!("(enum {})", cases.join(" ")))
            }
            Ty::Flags(n) => {
                let flags: Vec<String> = (0..*n).map(|i| format!("\"g{i}\"")).collect();
                self.name(format!("(flags {})", flags.join(" ")))
            }
        }
    }
}

/// The wasmtime type of `wat` (component-text type syntax), through a component importing a
/// function that takes it.
fn wasmtime_type(engine: &Engine, ty: impl FnOnce(&mut Wat) -> String) -> Type {
    let mut wat = Wat {
        defs: String::new(),
        next: 0,
    };
    let param = ty(&mut wat);
    let text = format!(
        "(component {} (import \"f\" (func (param \"x\" {param}))))",
        wat.defs
    );
    let component = Component::new(engine, &text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    let component_type = component.component_type();
    let (_, item) = component_type
        .imports(engine)
        .find(|(name, _)| *name == "f")
        .unwrap();
    let ComponentItem::ComponentFunc(func) = item.ty else {
        panic!("not a function");
    };
    func.params().next().unwrap().1
}

const CHARS: [char; 8] = ['a', 'Z', '0', ' ', 'é', 'ß', '中', '😀'];

/// A random value of `ty`, from `rng`.
fn arb_val(ty: &Type, rng: &mut fastrand::Rng, depth: usize) -> Val {
    // Deeper levels get shorter lists, so values stay small; one list in eight near the top
    // is long, to cross the transport's message size.
    let list_len = |rng: &mut fastrand::Rng| match rng.u8(..8) {
        0 if depth < 2 => rng.usize(1000..70_000),
        0..=1 => 0,
        _ => rng.usize(1..(6 >> depth.min(2)).max(2)),
    };
    match ty {
        Type::Bool => Val::Bool(rng.bool()),
        Type::U8 => Val::U8(rng.u8(..)),
        Type::S8 => Val::S8(rng.i8(..)),
        Type::U16 => Val::U16(rng.u16(..)),
        Type::S16 => Val::S16(rng.i16(..)),
        Type::U32 => Val::U32(rng.u32(..) >> rng.u32(0..32)),
        Type::S32 => Val::S32(rng.i32(..) >> rng.u32(0..32)),
        Type::U64 => Val::U64(rng.u64(..) >> rng.u32(0..64)),
        Type::S64 => Val::S64(rng.i64(..) >> rng.u32(0..64)),
        Type::Float32 => Val::Float32(match rng.u8(..6) {
            0 => f32::NAN,
            1 => -0.0,
            _ => f32::from_bits(rng.u32(..)),
        }),
        Type::Float64 => Val::Float64(match rng.u8(..6) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            _ => f64::from_bits(rng.u64(..)),
        }),
        Type::Char => Val::Char(CHARS[rng.usize(..CHARS.len())]),
        Type::String => {
            let len = list_len(rng).min(5000);
            Val::String((0..len).map(|_| CHARS[rng.usize(..CHARS.len())]).collect())
        }
        Type::List(list) => {
            let element = list.ty();
            let len = match element {
                Type::U8 => list_len(rng),
                _ => list_len(rng).min(40),
            };
            Val::List(
                (0..len)
                    .map(|_| arb_val(&element, rng, depth + 1))
                    .collect(),
            )
        }
        Type::Record(record) => Val::Record(
            record
                .fields()
                .map(|field| (field.name.to_string(), arb_val(&field.ty, rng, depth + 1)))
                .collect(),
        ),
        Type::Tuple(tuple) => Val::Tuple(
            tuple
                .types()
                .map(|ty| arb_val(&ty, rng, depth + 1))
                .collect(),
        ),
        Type::Variant(variant) => {
            let cases: Vec<_> = variant.cases().collect();
            let case = &cases[rng.usize(..cases.len())];
            Val::Variant(
                case.name.to_string(),
                case.ty
                    .as_ref()
                    .map(|ty| Box::new(arb_val(ty, rng, depth + 1))),
            )
        }
        Type::Enum(enumeration) => {
            let names: Vec<&str> = enumeration.names().collect();
            Val::Enum(names[rng.usize(..names.len())].to_string())
        }
        Type::Option(option) => Val::Option(
            rng.bool()
                .then(|| Box::new(arb_val(&option.ty(), rng, depth + 1))),
        ),
        Type::Result(result) => {
            let (ok, ty) = match rng.bool() {
                true => (true, result.ok()),
                false => (false, result.err()),
            };
            let payload = ty.map(|ty| Box::new(arb_val(&ty, rng, depth + 1)));
            Val::Result(if ok { Ok(payload) } else { Err(payload) })
        }
        Type::Flags(flags) => Val::Flags(
            flags
                .names()
                .filter(|_| rng.bool())
                .map(str::to_string)
                .collect(),
        ),
        other => panic!("the generator makes no {other:?}"),
    }
}

/// Delivers bytes in chunks of random sizes, as transport messages of any size would.
struct Chunked {
    bytes: Vec<u8>,
    at: usize,
    rng: fastrand::Rng,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let left = self.bytes.len() - self.at;
        let chunk = self
            .rng
            .usize(1..=left.clamp(1, 9000))
            .min(left)
            .min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + chunk]);
        self.at += chunk;
        Poll::Ready(Ok(()))
    }
}

fn encode(store: &mut Store<ResourceTable>, val: &Val, ty: &Type) -> Vec<u8> {
    let mut out = BytesMut::new();
    value::encode(&mut store.as_context_mut(), val, ty, &mut out).expect("encodes");
    out.to_vec()
}

use wasmtime::AsContextMut as _;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_values_of_random_types_round_trip(ty in arb_ty(), seed in any::<u64>()) {
        let engine = Engine::default();
        let wasm_ty = wasmtime_type(&engine, |wat| wat.ty(&ty));
        let mut rng = fastrand::Rng::with_seed(seed);
        let val = arb_val(&wasm_ty, &mut rng, 0);
        let mut store = Store::new(&engine, ResourceTable::new());
        let bytes = encode(&mut store, &val, &wasm_ty);

        let decoded = value::decode_all(&mut store.as_context_mut(), &bytes, std::slice::from_ref(&wasm_ty));
        prop_assert_eq!(&decoded.unwrap()[0], &val);

        let mut chunked = Chunked { bytes: bytes.clone(), at: 0, rng };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let read = runtime.block_on(value::read(&mut chunked, std::slice::from_ref(&wasm_ty))).unwrap();
        prop_assert_eq!(&read[0], &val);
        prop_assert_eq!(encode(&mut store, &read[0], &wasm_ty), bytes.clone());

        if !bytes.is_empty() {
            let cut = value::decode_all(&mut store.as_context_mut(), &bytes[..bytes.len() - 1], &[wasm_ty]);
            prop_assert!(matches!(cut, Err(ValueError::Incomplete(_))), "{cut:?}");
        }
    }
}

/// Checks wRPC's encoding of `value` against the bridge's, both ways (see the module docs).
fn agrees<T>(store: &mut Store<ResourceTable>, ty: &Type, value: T)
where
    T: Encode<Outgoing> + Decode<Incoming> + Clone + std::fmt::Debug,
    <T::Encoder as tokio_util::codec::Encoder<T>>::Error: std::fmt::Debug,
    <T::Decoder as tokio_util::codec::Decoder>::Error: std::fmt::Debug,
{
    let mut wrpc = BytesMut::new();
    T::Encoder::default()
        .encode(value.clone(), &mut wrpc)
        .unwrap();
    let decoded = value::decode_all(&mut store.as_context_mut(), &wrpc, std::slice::from_ref(ty))
        .unwrap_or_else(|e| panic!("decoding wRPC's {value:?} ({wrpc:02x?}): {e}"));
    let ours = encode(store, &decoded[0], ty);
    assert_eq!(
        ours,
        wrpc.to_vec(),
        "{value:?} re-encoded as {:?}",
        decoded[0]
    );
    let mut buffer = BytesMut::from(&ours[..]);
    let back = T::Decoder::default()
        .decode(&mut buffer)
        .unwrap()
        .expect("a whole value");
    // Generated types have no `PartialEq`; their `Debug` shows every field exactly.
    assert_eq!(format!("{back:?}"), format!("{value:?}"));
    assert!(buffer.is_empty(), "wRPC left {} bytes", buffer.len());
}

mod zoo {
    wit_bindgen_wrpc::generate!({
        inline: "
            package trellis:zoo;

            interface types {
                record point { x: s32, y: s32, label: string }
                variant shape { circle(f64), rect(point), empty }
                enum color { red, green, blue }
                flags small { a, b, c }
                flags medium { m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11 }
                flags wide {
                    w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14,
                    w15, w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29,
                }
                record zoo {
                    points: list<point>,
                    shapes: list<shape>,
                    colors: list<color>,
                    small: small,
                    medium: medium,
                    wide: wide,
                    maybe: option<result<shape, string>>,
                    bytes: list<u8>,
                }

                echo: func(zoo: zoo) -> zoo;
            }

            world zoo { import types; }
        ",
        generate_all,
    });
}

use zoo::trellis::zoo::types::{Color, Medium, Point, Shape, Small, Wide, Zoo};

const ZOO_WAT: &str = r#"
    (type $point' (record (field "x" s32) (field "y" s32) (field "label" string)))
    (import "point" (type $point (eq $point')))
    (type $shape' (variant (case "circle" f64) (case "rect" $point) (case "empty")))
    (import "shape" (type $shape (eq $shape')))
    (type $color' (enum "red" "green" "blue"))
    (import "color" (type $color (eq $color')))
    (type $small' (flags "a" "b" "c"))
    (import "small" (type $small (eq $small')))
    (type $medium' (flags "m0" "m1" "m2" "m3" "m4" "m5" "m6" "m7" "m8" "m9" "m10" "m11"))
    (import "medium" (type $medium (eq $medium')))
    (type $wide' (flags "w0" "w1" "w2" "w3" "w4" "w5" "w6" "w7" "w8" "w9" "w10" "w11" "w12" "w13"
        "w14" "w15" "w16" "w17" "w18" "w19" "w20" "w21" "w22" "w23" "w24" "w25" "w26" "w27" "w28"
        "w29"))
    (import "wide" (type $wide (eq $wide')))
    (type $zoo' (record (field "points" (list $point)) (field "shapes" (list $shape))
        (field "colors" (list $color)) (field "small" $small) (field "medium" $medium)
        (field "wide" $wide) (field "maybe" (option (result $shape (error string))))
        (field "bytes" (list u8))))
    (import "zoo" (type $zoo (eq $zoo')))
"#;

fn arb_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(CHARS.to_vec()), 0..20)
        .prop_map(|chars| chars.into_iter().collect())
}

fn arb_point() -> impl Strategy<Value = Point> {
    (any::<i32>(), any::<i32>(), arb_string()).prop_map(|(x, y, label)| Point { x, y, label })
}

fn arb_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        any::<f64>()
            .prop_filter("NaN payloads compare unequal", |f| !f.is_nan())
            .prop_map(Shape::Circle),
        arb_point().prop_map(Shape::Rect),
        Just(Shape::Empty),
    ]
}

fn arb_zoo() -> impl Strategy<Value = Zoo> {
    (
        proptest::collection::vec(arb_point(), 0..5),
        proptest::collection::vec(arb_shape(), 0..5),
        proptest::collection::vec(
            proptest::sample::select(vec![Color::Red, Color::Green, Color::Blue]),
            0..5,
        ),
        (any::<u8>(), any::<u16>(), any::<u32>()),
        proptest::option::of(prop_oneof![
            arb_shape().prop_map(Ok),
            arb_string().prop_map(Err)
        ]),
        proptest::collection::vec(any::<u8>(), 0..3000),
    )
        .prop_map(|(points, shapes, colors, (s, m, w), maybe, bytes)| Zoo {
            points,
            shapes,
            colors,
            small: Small::from_bits_truncate(s),
            medium: Medium::from_bits_truncate(m),
            wide: Wide::from_bits_truncate(w),
            maybe,
            bytes: bytes.into(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn primitives_agree_with_wrpc(
        ints in (any::<bool>(), any::<u8>(), any::<i8>(), any::<u16>(), any::<i16>(), any::<u32>(), any::<i32>(), any::<u64>(), any::<i64>()),
        floats in (any::<f32>(), any::<f64>(), proptest::sample::select(CHARS.to_vec())),
        text in arb_string(),
    ) {
        let engine = Engine::default();
        let mut store = Store::new(&engine, ResourceTable::new());
        let ty = wasmtime_type(&engine, |_| "(tuple bool u8 s8 u16 s16 u32 s32 u64 s64)".into());
        agrees(&mut store, &ty, ints);
        let ty = wasmtime_type(&engine, |_| "(tuple f32 f64 char)".into());
        if !floats.0.is_nan() && !floats.1.is_nan() {
            agrees(&mut store, &ty, floats);
        }
        let ty = wasmtime_type(&engine, |_| "string".into());
        agrees(&mut store, &ty, text);
    }

    #[test]
    fn lists_options_and_results_agree_with_wrpc(
        bytes in proptest::collection::vec(any::<u8>(), 0..70_000),
        strings in proptest::collection::vec(arb_string(), 0..8),
        nested in proptest::option::of(proptest::option::of(any::<u32>())),
        outcome in prop_oneof![arb_string().prop_map(Ok), any::<u8>().prop_map(Err)],
        pairs in proptest::collection::vec((any::<u32>(), arb_string()), 0..6),
        mixed in proptest::collection::vec(proptest::option::of(prop_oneof![any::<u64>().prop_map(Ok), arb_string().prop_map(Err)]), 0..6),
    ) {
        let engine = Engine::default();
        let mut store = Store::new(&engine, ResourceTable::new());
        let ty = wasmtime_type(&engine, |_| "(list u8)".into());
        agrees(&mut store, &ty, bytes::Bytes::from(bytes));
        let ty = wasmtime_type(&engine, |_| "(list string)".into());
        agrees(&mut store, &ty, strings);
        let ty = wasmtime_type(&engine, |_| "(option (option u32))".into());
        agrees(&mut store, &ty, nested);
        let ty = wasmtime_type(&engine, |_| "(result string (error u8))".into());
        agrees(&mut store, &ty, outcome);
        let ty = wasmtime_type(&engine, |_| "(list (tuple u32 string))".into());
        agrees(&mut store, &ty, pairs);
        let ty = wasmtime_type(&engine, |_| "(list (option (result u64 (error string))))".into());
        agrees(&mut store, &ty, mixed);
    }

    #[test]
    fn records_variants_enums_and_flags_agree_with_wit_bindgen_wrpc(zoo in arb_zoo()) {
        let engine = Engine::default();
        let mut store = Store::new(&engine, ResourceTable::new());
        let ty = wasmtime_type(&engine, |wat| {
            wat.defs.push_str(ZOO_WAT);
            "$zoo".into()
        });
        agrees(&mut store, &ty, zoo);
    }
}

/// wasmCloud's encoding, written out: what the bridge must produce for values whose bytes the
/// wire notes give.
#[test]
fn known_encodings() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, ResourceTable::new());
    let mut check = |wat: &str, val: Val, hex: &[u8]| {
        let ty = wasmtime_type(&engine, |_| wat.into());
        assert_eq!(encode(&mut store, &val, &ty), hex, "{wat} {val:?}");
    };
    check("u8", Val::U8(200), &[0xc8]);
    check("u32", Val::U32(300), &[0xac, 0x02]);
    check("s32", Val::S32(-65), &[0xbf, 0x7f]);
    check("s16", Val::S16(-32768), &[0x80, 0x80, 0x7e]);
    check(
        "u64",
        Val::U64(u64::MAX),
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    );
    check("f32", Val::Float32(1.5), &[0x00, 0x00, 0xc0, 0x3f]);
    check(
        "f32",
        Val::Float32(f32::from_bits(0x7fc0_0001)),
        &[0x00, 0x00, 0xc0, 0x7f],
    );
    check("char", Val::Char('😀'), &[0xf0, 0x9f, 0x98, 0x80]);
    check("string", Val::String("hi".into()), &[0x02, 0x68, 0x69]);
    check(
        "(list u8)",
        Val::List(vec![Val::U8(1), Val::U8(2), Val::U8(3)]),
        &[3, 1, 2, 3],
    );
    check(
        "(result u32 (error string))",
        Val::Result(Err(Some(Box::new(Val::String("e".into()))))),
        &[0x01, 0x01, 0x65],
    );
    check("(result)", Val::Result(Ok(None)), &[0x00]);
    check(
        "(option (option u8))",
        Val::Option(Some(Box::new(Val::Option(None)))),
        &[0x01, 0x00],
    );
}

#[test]
fn refusals_name_the_type() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, ResourceTable::new());
    let ty = wasmtime_type(&engine, |_| "(list u32)".into());
    let error = value::encode(
        &mut store.as_context_mut(),
        &Val::String("x".into()),
        &ty,
        &mut BytesMut::new(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("expected list"), "{error}");
    let ty = wasmtime_type(&engine, |_| "bool".into());
    let error = value::decode_all(&mut store.as_context_mut(), &[7], &[ty]).unwrap_err();
    assert!(error.to_string().contains("bool tag 7"), "{error}");
}
