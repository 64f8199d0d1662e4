//! Each validation rule rejects its bad manifest with the field path and reason; a good
//! manifest passes with wadm's defaults; odd shapes never panic.

use serde_json::{Value, json};
use trellis_deployer::manifest::{self, Level, ScalerKind};
use trellis_deployer::spec::{AppSpec, sanitize};

fn good() -> Value {
    json!({
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": "demo-app", "annotations": {"version": "v1"}},
        "spec": {
            "policies": [{"name": "vault", "type": "policy.secret.wasmcloud.dev/v1alpha1", "properties": {"backend": "nats-kv"}}],
            "components": [
                {"name": "api", "type": "component",
                 "properties": {"image": "file:///api.wasm", "config": [{"name": "settings", "properties": {"a": "1"}}],
                                "secrets": [{"name": "token", "properties": {"policy": "vault", "key": "k"}}]},
                 "traits": [
                    {"type": "spreadscaler", "properties": {"replicas": 2, "spread": [{"name": "east", "requirements": {"zone": "a"}, "weight": 80}]}},
                    {"type": "link", "properties": {"target": {"name": "kv", "config": [{"name": "bucket", "properties": {"b": "x"}}]},
                      "namespace": "wasi", "package": "keyvalue", "interfaces": ["store", "atomics"]}}
                 ]},
                {"name": "kv", "type": "capability", "properties": {"image": "file:///kv.wasm"}},
                {"name": "web", "type": "capability", "properties": {"image": "wasmcloud+builtin://http-server"},
                 "traits": [{"type": "link", "properties": {"target": "api", "namespace": "wasi", "package": "http",
                   "interfaces": ["incoming-handler"], "source": {"config": [{"name": "listen", "properties": {"address": "127.0.0.1:8080"}}]}}}]}
            ]
        }
    })
}

/// Applies `change` to the good manifest and returns the error paths and messages.
fn errors(change: impl FnOnce(&mut Value)) -> Vec<(String, String)> {
    let mut doc = good();
    change(&mut doc);
    let bytes = serde_json::to_vec(&doc).unwrap();
    match manifest::parse(&bytes) {
        Ok(_) => Vec::new(),
        Err(rejection) => rejection
            .errors()
            .map(|p| (p.path.clone(), p.reason.clone()))
            .collect(),
    }
}

fn assert_rejected(path: &str, reason: &str, change: impl FnOnce(&mut Value)) {
    let found = errors(change);
    assert!(
        found.iter().any(|(p, r)| p == path && r.contains(reason)),
        "expected `{path}`: …{reason}…, got {found:?}"
    );
}

#[test]
fn good_manifest_parses_with_wadm_defaults_and_ids() {
    let parsed = manifest::parse(&serde_json::to_vec(&good()).unwrap()).unwrap();
    let api = &parsed.manifest.components[0];
    let scaler = api.scaler.as_ref().unwrap();
    assert_eq!((scaler.kind, scaler.instances), (ScalerKind::Spread, 2));
    assert_eq!(api.links[0].name, "default");
    assert!(
        parsed.warnings.iter().all(|w| w.level == Level::Warning),
        "{:?}",
        parsed.warnings
    );

    let spec = AppSpec::new(&parsed.manifest, "v1");
    let ids: Vec<&str> = spec.workloads.iter().map(|w| w.id.as_str()).collect();
    // The provider without a scaler gets one implicit instance.
    assert_eq!(ids, ["demo_app-api", "demo_app-kv", "demo_app-web"]);
    assert_eq!(spec.workloads[1].instances, 1);
    assert_eq!(
        spec.workloads[0].config,
        ["demo_app-settings", "SECRET_demo_app-token"]
    );
    assert!(spec.owned_configs.contains_key("demo_app-bucket"));
    assert_eq!(spec.links[0].link.target, "demo_app-kv");
    assert_eq!(spec.links[0].link.target_config, ["demo_app-bucket"]);
    assert_eq!(spec.links[1].link.source_id, "demo_app-web");
    assert_eq!(sanitize("rust-hello-world"), "rust_hello_world");
    let secret = &spec.owned_configs["SECRET_demo_app-token"];
    assert_eq!(secret["backend"], "nats-kv");
    assert_eq!(secret["type"], "secret.wasmcloud.dev/v1alpha1");
}

#[test]
fn yaml_and_json_read_the_same() {
    let yaml = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: y
  annotations: {}
spec:
  components:
    - name: c
      type: actor
      properties: { image: "file:///c.wasm" }
      traits:
        - type: daemonscaler
          properties: { instances: 3 }
"#;
    let parsed = manifest::parse(yaml.as_bytes()).unwrap();
    assert_eq!(
        parsed.manifest.components[0].scaler.as_ref().unwrap().kind,
        ScalerKind::Daemon
    );
    let broken = manifest::parse(b"metadata: [unclosed").unwrap_err();
    assert!(broken.to_string().contains("line 1"), "{broken}");
}

#[test]
fn each_rule_names_its_field() {
    assert_rejected("metadata.name", "not allowed", |d| {
        d["metadata"]["name"] = "a.b".into()
    });
    assert_rejected("metadata.annotations.version", "`latest`", |d| {
        d["metadata"]["annotations"]["version"] = "latest".into()
    });
    assert_rejected("metadata.annotations", "is required", |d| {
        d["metadata"].as_object_mut().unwrap().remove("annotations");
    });
    assert_rejected("metadata.labels.-bad", "not a valid OAM key", |d| {
        d["metadata"]["labels"] = json!({"-bad": "x"})
    });
    assert_rejected("spec.components[1].name", "duplicate component name", |d| {
        d["spec"]["components"][1]["name"] = "api".into()
    });
    assert_rejected(
        "spec.components[1].properties.id",
        "duplicate component id",
        |d| {
            d["spec"]["components"][0]["properties"]["id"] = "same".into();
            d["spec"]["components"][1]["properties"]["id"] = "same".into();
        },
    );
    assert_rejected("spec.components[0].properties.id", "NATS subject", |d| {
        d["spec"]["components"][0]["properties"]["id"] = "a.b".into()
    });
    assert_rejected("spec.components[0].properties.id", "NATS subject", |d| {
        d["spec"]["components"][0]["properties"]["id"] = "x.*".into()
    });
    assert_rejected(
        "spec.components[0].traits[1].properties.name",
        "link name `a b`",
        |d| d["spec"]["components"][0]["traits"][1]["properties"]["name"] = "a b".into(),
    );
    assert_rejected(
        "spec.components[0].properties.config[0].name",
        "JetStream KV key",
        |d| d["spec"]["components"][0]["properties"]["config"] = json!([{"name": "shared*"}]),
    );
    assert_rejected(
        "spec.components[0].traits[1].properties.target",
        "not a component",
        |d| {
            d["spec"]["components"][0]["traits"][1]["properties"]["target"]["name"] = "ghost".into()
        },
    );
    assert_rejected(
        "spec.components[0].properties.secrets[0].properties.policy",
        "unknown policy",
        |d| {
            d["spec"]["components"][0]["properties"]["secrets"][0]["properties"]["policy"] =
                "nope".into()
        },
    );
    assert_rejected(
        "spec.components[0].properties.secrets[0].properties.policy",
        "not a secret policy",
        |d| d["spec"]["policies"][0]["type"] = "other".into(),
    );
    assert_rejected(
        "spec.components[0].properties.secrets[0].properties.policy",
        "no `backend`",
        |d| d["spec"]["policies"][0]["properties"] = json!({}),
    );
    assert_rejected(
        "spec.components[0].traits[0].properties.instances",
        "is required",
        |d| d["spec"]["components"][0]["traits"][0]["properties"] = json!({"spread": []}),
    );
    assert_rejected(
        "spec.components[0].traits[0].properties.spred",
        "unknown field",
        |d| d["spec"]["components"][0]["traits"][0]["properties"]["spred"] = json!([]),
    );
    assert_rejected(
        "spec.components[0].traits[0].properties.spread[0].requirements",
        "is required",
        |d| {
            d["spec"]["components"][0]["traits"][0]["properties"]["spread"][0]
                .as_object_mut()
                .unwrap()
                .remove("requirements");
        },
    );
    assert_rejected(
        "spec.components[0].traits[0].properties.spread",
        "weight 0",
        |d| d["spec"]["components"][0]["traits"][0]["properties"]["spread"][0]["weight"] = 0.into(),
    );
    assert_rejected(
        "spec.components[0].traits[0].properties.instances",
        "non-negative integer",
        |d| d["spec"]["components"][0]["traits"][0]["properties"] = json!({"instances": -1}),
    );
    assert_rejected(
        "spec.components[0].properties",
        "both 'image' and 'application'",
        |d| {
            d["spec"]["components"][0]["properties"]["application"] =
                json!({"name": "s", "component": "c"})
        },
    );
    assert_rejected(
        "spec.components[1].properties",
        "either an 'image' or an 'application'",
        |d| d["spec"]["components"][1]["properties"] = json!({}),
    );
    assert_rejected(
        "spec.components[0].properties.config",
        "shared component",
        |d| {
            d["spec"]["components"][0]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("image");
            d["spec"]["components"][0]["properties"]["application"] =
                json!({"name": "s", "component": "c"});
        },
    );
    assert_rejected(
        "spec.components[0].properties.secrets",
        "cannot specify additional secrets",
        |d| {
            let props = d["spec"]["components"][0]["properties"]
                .as_object_mut()
                .unwrap();
            props.remove("image");
            props.remove("config");
            props.insert("application".into(), json!({"name": "s", "component": "c"}));
        },
    );
    assert_rejected(
        "spec.components[0].traits[0]",
        "cannot include a scaler trait",
        |d| {
            let props = d["spec"]["components"][0]["properties"]
                .as_object_mut()
                .unwrap();
            props.remove("image");
            props.remove("config");
            props.remove("secrets");
            props.insert("application".into(), json!({"name": "s", "component": "c"}));
        },
    );
    assert_rejected(
        "metadata.annotations.experimental.wasmcloud.dev/shared",
        "must be `true` or `false`",
        |d| d["metadata"]["annotations"]["experimental.wasmcloud.dev/shared"] = "yes".into(),
    );
    assert_rejected(
        "spec.components[0].traits[0].properties.spread[1].name",
        "duplicate spread name `east`",
        |d| {
            d["spec"]["components"][0]["traits"][0]["properties"]["spread"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "east", "requirements": {"zone": "b"}}))
        },
    );
    assert_rejected(
        "spec.components[0].traits[2].properties.interfaces[0]",
        "duplicate link",
        |d| {
            let link = d["spec"]["components"][0]["traits"][1].clone();
            d["spec"]["components"][0]["traits"]
                .as_array_mut()
                .unwrap()
                .push(link);
        },
    );
    assert_rejected(
        "spec.components[2].traits[0].properties.source.config[0].name",
        "duplicate link config name",
        |d| {
            d["spec"]["components"][2]["traits"][0]["properties"]["source"]["config"][0]["name"] =
                "bucket".into()
        },
    );
    assert_rejected(
        "spec.components[2].traits[0].properties.target",
        "two capability providers",
        |d| d["spec"]["components"][2]["traits"][0]["properties"]["target"] = "kv".into(),
    );
    assert_rejected(
        "spec.components[0].traits[1].properties.interfaces",
        "at least one",
        |d| d["spec"]["components"][0]["traits"][1]["properties"]["interfaces"] = json!([]),
    );
    assert_rejected("spec.components[0].type", "unknown component type", |d| {
        d["spec"]["components"][0]["type"] = "service".into()
    });
    assert_rejected(
        "spec.components[0].traits[2].type",
        "only one scaler",
        |d| {
            let scaler = d["spec"]["components"][0]["traits"][0].clone();
            d["spec"]["components"][0]["traits"]
                .as_array_mut()
                .unwrap()
                .push(scaler);
        },
    );
    assert_rejected(
        "spec.components[0].properties.config[0].properties.a",
        "quote it",
        |d| d["spec"]["components"][0]["properties"]["config"][0]["properties"]["a"] = 8080.into(),
    );
}

#[test]
fn non_string_link_fields_are_errors_not_panics() {
    // wadm-types unwraps these; here each is an error naming the field.
    for (field, value) in [
        ("namespace", json!(1)),
        ("package", json!(true)),
        ("name", json!({"x": 1})),
        ("interfaces", json!([1])),
        ("target", json!(7)),
    ] {
        let found =
            errors(|d| d["spec"]["components"][0]["traits"][1]["properties"][field] = value);
        let prefix = format!("spec.components[0].traits[1].properties.{field}");
        assert!(
            found
                .iter()
                .any(|(p, r)| p.starts_with(&prefix) && r.contains("must be")),
            "{field}: {found:?}"
        );
    }
    for shape in [
        json!(null),
        json!([]),
        json!("x"),
        json!({"spec": 1}),
        json!({"metadata": {}, "spec": {"components": [1, null, {}]}}),
    ] {
        let bytes = serde_json::to_vec(&shape).unwrap();
        assert!(manifest::parse(&bytes).is_err());
    }
}

/// The warnings of a manifest that parses.
fn warnings_of(doc: &Value) -> Vec<(String, String)> {
    let parsed = manifest::parse(&serde_json::to_vec(doc).unwrap())
        .unwrap_or_else(|rejection| panic!("rejected: {rejection}"));
    parsed
        .warnings
        .iter()
        .map(|w| (w.path.clone(), w.reason.clone()))
        .collect()
}

#[test]
fn keys_wadm_ignores_are_warned_of_not_refused() {
    let mut doc = good();
    let link = &mut doc["spec"]["components"][0]["traits"][1]["properties"];
    link["source"] = json!({"name": "api", "config": [{"name": "src", "properties": {"s": "1"}}]});
    link["target"]["note"] = "x".into();
    link["comment"] = "x".into();
    doc["spec"]["components"][0]["trait"] = json!([]);
    doc["spec"]["components"][0]["properties"]["secrets"][0]["from"] = "x".into();
    doc["spec"]["components"][0]["properties"]["secrets"][0]["properties"]["note"] = "x".into();
    let warnings = warnings_of(&doc);
    for path in [
        "spec.components[0].traits[1].properties.source.name",
        "spec.components[0].traits[1].properties.target.note",
        "spec.components[0].traits[1].properties.comment",
        "spec.components[0].trait",
        "spec.components[0].properties.secrets[0].from",
        "spec.components[0].properties.secrets[0].properties.note",
    ] {
        assert!(
            warnings
                .iter()
                .any(|(p, r)| p == path && r.starts_with("unknown field, ignored")),
            "{path}: {warnings:?}"
        );
    }
    // What is read is still read.
    let parsed = manifest::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(
        parsed.manifest.components[0].links[0].source_config[0].name,
        "src"
    );

    // Where wadm refuses unknown keys, so does Trellis.
    assert_rejected("spec.components[0].properties.imag", "unknown field", |d| {
        d["spec"]["components"][0]["properties"]["imag"] = "x".into()
    });
    assert_rejected(
        "spec.components[0].properties.config[0].value",
        "unknown field",
        |d| d["spec"]["components"][0]["properties"]["config"][0]["value"] = "x".into(),
    );
}

#[test]
fn metadata_and_policies_take_yaml_scalars_as_text() {
    // wadm reads these straight from the YAML, where a plain scalar is taken as written.
    let yaml = br#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: scalars
  annotations:
    version: 1.5
    wasmcloud.dev/homepage:
    experimental: true
  labels:
    tier: 2
spec:
  policies:
    - name: vault
      type: policy.secret.wasmcloud.dev/v1alpha1
      properties:
        port: 8200
  components:
    - name: api
      type: component
      properties:
        image: file:///api.wasm
"#;
    let parsed = manifest::parse(yaml).unwrap_or_else(|r| panic!("rejected: {r}"));
    let annotations = &parsed.manifest.annotations;
    assert_eq!(annotations["version"], "1.5");
    assert_eq!(annotations["wasmcloud.dev/homepage"], "");
    assert_eq!(annotations["experimental"], "true");
    assert_eq!(parsed.manifest.labels["tier"], "2");
    assert_eq!(parsed.manifest.policies[0].properties["port"], "8200");
    // Inside the components wadm reads a buffered document, where a number is no string.
    let unquoted = String::from_utf8_lossy(yaml).replace(
        "image: file:///api.wasm",
        "image: file:///api.wasm\n        config:\n          - name: c\n            properties:\n              port: 8080",
    );
    let rejection = manifest::parse(unquoted.as_bytes()).unwrap_err();
    assert!(
        rejection.errors().any(|p| p.path
            == "spec.components[0].properties.config[0].properties.port"
            && p.reason.contains("quote it")),
        "{rejection}"
    );
}

#[test]
fn unknown_interfaces_and_custom_traits_only_warn() {
    let mut doc = good();
    doc["spec"]["components"][0]["traits"][1]["properties"]["interfaces"] = json!(["watcher"]);
    doc["spec"]["components"][0]["traits"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "customscaler", "properties": {"x": 1}}));
    let parsed = manifest::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
    let warnings: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("unrecognized interface wasi:keyvalue/watcher")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("spec.components[0].traits[2].type")),
        "{warnings:?}"
    );

    // A known namespace with a package wadm does not know: a warning on the package.
    let mut doc = good();
    doc["spec"]["components"][2]["traits"][0]["properties"]["package"] = "htp".into();
    let parsed = manifest::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
    let package: Vec<&manifest::Problem> = parsed
        .warnings
        .iter()
        .filter(|w| w.path == "spec.components[2].traits[0].properties.package")
        .collect();
    assert!(
        package.len() == 1
            && package[0].level == Level::Warning
            && package[0].reason == "unrecognized package wasi:htp",
        "{:?}",
        parsed.warnings
    );
    // An unknown namespace is fine: no warning at all.
    doc["spec"]["components"][2]["traits"][0]["properties"]["namespace"] = "acme".into();
    let parsed = manifest::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(parsed.warnings, [], "{:?}", parsed.warnings);
}

/// A manifest from JSON, parsed and validated.
fn manifest_of(doc: Value) -> manifest::Manifest {
    manifest::parse(&serde_json::to_vec(&doc).unwrap())
        .unwrap()
        .manifest
}

#[test]
fn shared_references_need_a_deployed_shared_app_with_that_component() {
    let shared = |annotation: &str| {
        manifest_of(json!({
            "apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": "infra", "annotations": {"experimental.wasmcloud.dev/shared": annotation}},
            "spec": {"components": [
                {"name": "web", "type": "capability", "properties": {"image": "wasmcloud+builtin://http-server"}},
                {"name": "math", "type": "component", "properties": {"image": "file:///math.wasm"},
                 "traits": [{"type": "spreadscaler", "properties": {"instances": 1}}]}
            ]}
        }))
    };
    let consumer = |component: &str| {
        manifest_of(json!({
            "apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": "shop", "annotations": {}},
            "spec": {"components": [
                {"name": "api", "type": "component", "properties": {"image": "file:///api.wasm"},
                 "traits": [{"type": "spreadscaler", "properties": {"instances": 1}}]},
                {"name": "server", "type": "capability",
                 "properties": {"application": {"name": "infra", "component": component}},
                 "traits": [{"type": "link", "properties": {"target": {"name": "api"}, "namespace": "wasi",
                   "package": "http", "interfaces": ["incoming-handler"]}}]}
            ]}
        }))
    };
    let check = |m: &manifest::Manifest, deployed: &[manifest::Manifest]| {
        let deployed = deployed
            .iter()
            .map(|d| (d.name.clone(), d.clone()))
            .collect();
        manifest::validate::shared_references(m, &deployed)
            .into_iter()
            .map(|p| (p.path, p.reason))
            .collect::<Vec<_>>()
    };
    let path = "spec.components[1].properties.application";
    let expect = |found: Vec<(String, String)>, reason: &str| {
        assert!(
            found.len() == 1 && found[0].0 == path && found[0].1.contains(reason),
            "expected `{path}`: …{reason}…, got {found:?}"
        );
    };

    assert_eq!(check(&consumer("web"), &[shared("true")]), []);
    expect(
        check(&consumer("web"), &[]),
        "application `infra` is not deployed",
    );
    expect(
        check(&consumer("web"), &[shared("false")]),
        "application `infra` is not shared (it needs the annotation \
         `experimental.wasmcloud.dev/shared: \"true\"`)",
    );
    expect(
        check(&consumer("nope"), &[shared("true")]),
        "shared application `infra` has no component `nope`",
    );
    expect(
        check(&consumer("math"), &[shared("true")]),
        "`math` in shared application `infra` is a component, not a capability",
    );
    // The link to a shared reference targets the shared app's ID, as wadm derives it.
    let spec = AppSpec::new(&consumer("web"), "v1");
    assert_eq!(spec.links[0].link.source_id, "infra-web");
    assert!(spec.workloads.iter().all(|w| w.id != "infra-web"));
}
