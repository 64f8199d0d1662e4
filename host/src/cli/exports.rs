//! What a component exports, with wasmtime's own types: the component is compiled (never run)
//! on an engine of its own, so that `trellis ctl call` can check and encode arguments and
//! `trellis dev` can tell whether it serves HTTP.

use anyhow::Context as _;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Type};
use wasmtime::{Config, Engine, OptLevel};

/// An exported function: `instance` is empty for a function exported by the component itself.
pub struct Function {
    pub instance: String,
    pub name: String,
    pub params: Vec<(String, Type)>,
    pub results: Vec<Type>,
}

impl Function {
    /// `instance.name`, or `name` for a function of the component itself.
    pub fn path(&self) -> String {
        if self.instance.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.instance, self.name)
        }
    }

    /// `add(a: u32, b: u32) -> u32`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(name, ty)| format!("{name}: {}", describe(ty)))
            .collect();
        let results: Vec<String> = self.results.iter().map(describe).collect();
        match results.as_slice() {
            [] => format!("{}({})", self.name, params.join(", ")),
            [one] => format!("{}({}) -> {one}", self.name, params.join(", ")),
            many => format!(
                "{}({}) -> ({})",
                self.name,
                params.join(", "),
                many.join(", ")
            ),
        }
    }
}

/// A component's exports, and the engine their types belong to.
pub struct Exports {
    pub engine: Engine,
    /// Every exported instance's name (`wasi:http/incoming-handler@0.2.0`).
    pub instances: Vec<String>,
    /// Every exported function, resource methods left out.
    pub functions: Vec<Function>,
}

impl Exports {
    /// Compiles `bytes` to read their export types.
    pub fn of(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut config = Config::new();
        // Only the types are needed: the quickest code is enough.
        config.cranelift_opt_level(OptLevel::None);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let component = Component::new(&engine, bytes)
            .map_err(anyhow::Error::from)
            .context("not a valid component")?;
        let mut instances = Vec::new();
        let mut functions = Vec::new();
        for (name, item) in component.component_type().exports(&engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    functions.push(function("", name, &func));
                }
                ComponentItem::ComponentInstance(instance) => {
                    instances.push(name.to_string());
                    for (function_name, item) in instance.exports(&engine) {
                        if let ComponentItem::ComponentFunc(func) = item.ty
                            && !function_name.starts_with('[')
                        {
                            functions.push(function(name, function_name, &func));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            engine,
            instances,
            functions,
        })
    }

    /// Whether it exports `wasi:http/incoming-handler` (any 0.2 version).
    pub fn serves_http(&self) -> bool {
        self.instances
            .iter()
            .any(|name| name.starts_with("wasi:http/incoming-handler@0.2"))
    }

    /// The function `spec` names: `ns:pkg/iface@version.func`, the same without the version,
    /// `iface.func`, or a bare `func` when only one export has that name. The error lists what
    /// the component exports.
    pub fn find(&self, spec: &str) -> Result<&Function, String> {
        let (instance, name) = match spec.rsplit_once(['.', '#']) {
            Some((instance, name)) => (Some(instance), name),
            None => (None, spec),
        };
        let matches: Vec<&Function> = self
            .functions
            .iter()
            .filter(|f| {
                f.name == name
                    && instance.is_none_or(|wanted| {
                        let unversioned = f.instance.split('@').next().unwrap_or_default();
                        let short = unversioned.rsplit('/').next().unwrap_or_default();
                        f.instance == wanted || unversioned == wanted || short == wanted
                    })
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(format!(
                "it exports no function `{spec}`; it exports {}",
                self.listing()
            )),
            many => Err(format!(
                "`{spec}` is ambiguous: name one of {}",
                many.iter()
                    .map(|f| format!("`{}`", f.path()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// `trellis:example/adder@0.1.0.{add, echo}, run`.
    fn listing(&self) -> String {
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for f in &self.functions {
            match groups
                .iter_mut()
                .find(|(instance, _)| *instance == f.instance)
            {
                Some((_, names)) => names.push(&f.name),
                None => groups.push((f.instance.clone(), vec![&f.name])),
            }
        }
        if groups.is_empty() {
            return "no functions".into();
        }
        groups
            .into_iter()
            .map(
                |(instance, names)| match (instance.as_str(), names.as_slice()) {
                    ("", names) => names.join(", "),
                    (instance, [one]) => format!("{instance}.{one}"),
                    (instance, names) => format!("{instance}.{{{}}}", names.join(", ")),
                },
            )
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn function(instance: &str, name: &str, func: &ComponentFunc) -> Function {
    Function {
        instance: instance.to_string(),
        name: name.to_string(),
        params: func
            .params()
            .map(|(name, ty)| (name.to_string(), ty))
            .collect(),
        results: func.results().collect(),
    }
}

/// A type as WIT writes it, shortened for records and the like: `list<u8>`, `option<u32>`,
/// `record { x, y, label }`, `enum { red, green, blue }`.
pub fn describe(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(list) => format!("list<{}>", describe(&list.ty())),
        Type::Record(record) => format!(
            "record {{ {} }}",
            record
                .fields()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Tuple(tuple) => format!(
            "tuple<{}>",
            tuple
                .types()
                .map(|t| describe(&t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(variant) => format!(
            "variant {{ {} }}",
            variant
                .cases()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Enum(enumeration) => format!(
            "enum {{ {} }}",
            enumeration.names().collect::<Vec<_>>().join(", ")
        ),
        Type::Option(option) => format!("option<{}>", describe(&option.ty())),
        Type::Result(result) => format!(
            "result<{}, {}>",
            result.ok().map_or("_".into(), |t| describe(&t)),
            result.err().map_or("_".into(), |t| describe(&t))
        ),
        Type::Flags(flags) => format!(
            "flags {{ {} }}",
            flags.names().collect::<Vec<_>>().join(", ")
        ),
        Type::Own(_) | Type::Borrow(_) => "resource".into(),
        _ => "an unsupported type".into(),
    }
}

/// Whether a value of `ty` holds a resource somewhere (such functions are not served over wRPC).
pub fn has_resource(ty: &Type) -> bool {
    match ty {
        Type::Own(_) | Type::Borrow(_) => true,
        Type::List(list) => has_resource(&list.ty()),
        Type::Record(record) => record.fields().any(|f| has_resource(&f.ty)),
        Type::Tuple(tuple) => tuple.types().any(|t| has_resource(&t)),
        Type::Variant(variant) => variant
            .cases()
            .any(|c| c.ty.is_some_and(|t| has_resource(&t))),
        Type::Option(option) => has_resource(&option.ty()),
        Type::Result(result) => {
            result.ok().is_some_and(|t| has_resource(&t))
                || result.err().is_some_and(|t| has_resource(&t))
        }
        _ => false,
    }
}
