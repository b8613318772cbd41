//! What makes Wasm an mr app (apps-wasm/README.md), in either of its two forms:
//! - a core module (the fast path, what the Rust and C SDKs build): valid, importing only
//!   the host functions of module "mr", exporting `memory` and the four `mr_*` functions
//!   with their types;
//! - a component of the world `mapreduce:app/app@1.0.0` (`apps-wasm/wit/app.wit`; what
//!   componentize-py builds): valid, exporting the functions `map` and `reduce`,
//!   importing only the interface `mapreduce:app/host@1.0.0` and WASI 0.2 interfaces
//!   (which the worker implements with no files, sockets, environment or clock; a
//!   component built with stubbed WASI imports none).
//!
//! Checked by the coordinator when an app is uploaded and by the worker before it
//! compiles one, with the same messages. Function types of a component are checked by the
//! worker's typed bindings when it loads the component.

use wasmparser::{
    ComponentExternalKind, CompositeInnerType, ExternalKind, Payload, TypeRef, ValType, Validator,
    WasmFeatures,
};

/// A WASI 0.2 interface (`wasi:cli/environment@0.2.3`): what the worker links, empty.
fn is_wasi_0_2(name: &str) -> bool {
    name.strip_prefix("wasi:")
        .and_then(|rest| rest.split_once('@'))
        .is_some_and(|(_, version)| version.starts_with("0.2."))
}

/// The WIT package and version of the component interface (`apps-wasm/wit/app.wit`).
pub const WIT_PACKAGE: &str = "mapreduce:app@1.0.0";

/// The one non-WASI interface a component may import.
pub const HOST_INTERFACE: &str = "mapreduce:app/host@1.0.0";

/// The functions a component must export.
pub const COMPONENT_EXPORTS: [&str; 2] = ["map", "reduce"];

/// Which form of app some Wasm is, by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A core module (`\0asm`, version 1).
    Module,
    /// A component (`\0asm`, the component layer).
    Component,
}

/// The form of `wasm`, or why it is neither.
pub fn kind(wasm: &[u8]) -> Result<Kind, String> {
    if !wasm.starts_with(b"\0asm") {
        return Err("it is not a WebAssembly module or component (no \\0asm header)".into());
    }
    if wasmparser::Parser::is_component(wasm) {
        Ok(Kind::Component)
    } else {
        Ok(Kind::Module)
    }
}

/// Whether `wasm` is an app, as a module or a component; if not, what is wrong, in a
/// sentence that can follow "the module is not an app: ".
pub fn check(wasm: &[u8]) -> Result<Kind, String> {
    match kind(wasm)? {
        Kind::Module => check_module(wasm).map(|()| Kind::Module),
        Kind::Component => check_component(wasm).map(|()| Kind::Component),
    }
}

/// The component form: valid, the world's exports, allowed imports only.
fn check_component(wasm: &[u8]) -> Result<(), String> {
    Validator::new_with_features(WasmFeatures::default() | WasmFeatures::COMPONENT_MODEL)
        .validate_all(wasm)
        .map_err(|e| format!("it is not a valid WebAssembly component: {e}"))?;
    let (imports, exports) = outer_items(wasm)?;
    for name in imports {
        if name == HOST_INTERFACE || is_wasi_0_2(&name) {
            continue;
        }
        return Err(if name.starts_with("wasi:") {
            format!(
                "it imports `{name}`, but the worker provides WASI 0.2 only: build it for \
                 WASI 0.2, or with stubbed WASI (`componentize-py --stub-wasi`)"
            )
        } else {
            format!(
                "it imports `{name}`, but a component app may import only \
                 `{HOST_INTERFACE}` and WASI 0.2 interfaces"
            )
        });
    }
    for name in COMPONENT_EXPORTS {
        match exports.iter().find(|(n, _)| n == name) {
            Some((_, ComponentExternalKind::Func)) => {}
            Some(_) => return Err(format!("export `{name}` is not a function")),
            None => {
                return Err(format!(
                    "it does not export `{name}` (a component app targets the world \
                     `{WIT_PACKAGE}`'s `app`: apps-wasm/wit/app.wit)"
                ));
            }
        }
    }
    Ok(())
}

/// The names a component imports (`wasi:cli/environment@0.2.6`, ...), in order.
pub fn component_imports(wasm: &[u8]) -> Result<Vec<String>, String> {
    outer_items(wasm).map(|(imports, _)| imports)
}

/// The outermost component's import names and exports; nested components and modules
/// are its implementation.
fn outer_items(wasm: &[u8]) -> Result<OuterItems, String> {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    exports.push((export.name.name.to_string(), export.kind));
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

type OuterItems = (Vec<String>, Vec<(String, ComponentExternalKind)>);

/// The functions of import module "mr", the only imports an app may have.
pub const HOST_FUNCTIONS: [&str; 5] = ["log", "fail", "random_u64", "sleep_ms", "counter"];

/// The function exports an app must have, with their types.
const EXPORTS: [(&str, &str); 4] = [
    ("mr_abi_version", "() -> i32"),
    ("mr_alloc", "(i32) -> i32"),
    ("mr_map", "(i32, i32) -> i64"),
    ("mr_reduce", "(i32, i32) -> i64"),
];

/// The module form: valid, the ABI's exports with their types, imports of "mr" only.
fn check_module(wasm: &[u8]) -> Result<(), String> {
    Validator::new()
        .validate_all(wasm)
        .map_err(|e| format!("it is not a valid WebAssembly module: {e}"))?;
    // Function types by type index, and each function's type index (imports first).
    let mut types: Vec<Option<String>> = Vec::new();
    let mut funcs: Vec<u32> = Vec::new();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut memories: Vec<(bool, bool)> = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group.map_err(|e| e.to_string())?.into_types() {
                        types.push(match &sub.composite_type.inner {
                            CompositeInnerType::Func(f) => Some(signature(f.params(), f.results())),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| e.to_string())?;
                    let known = import.module == "mr" && HOST_FUNCTIONS.contains(&import.name);
                    match import.ty {
                        TypeRef::Func(ty) if known => funcs.push(ty),
                        _ => {
                            return Err(format!(
                                "it imports `{}::{}`, but an app may import only the functions \
                                 {} of module \"mr\" (no WASI, no other host functions)",
                                import.module,
                                import.name,
                                HOST_FUNCTIONS.join(", ")
                            ));
                        }
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    funcs.push(ty.map_err(|e| e.to_string())?);
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(|e| e.to_string())?;
                    memories.push((memory.memory64, memory.shared));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            _ => {}
        }
    }
    let export = |name: &str| exports.iter().find(|(n, _, _)| n == name);
    for (name, want) in EXPORTS {
        match export(name) {
            Some((_, ExternalKind::Func, index)) => {
                let got = funcs
                    .get(*index as usize)
                    .and_then(|&ty| types.get(ty as usize).cloned().flatten())
                    .unwrap_or_default();
                if got != want {
                    return Err(format!("export `{name}` has type {got}, not {want}"));
                }
            }
            Some(_) => return Err(format!("export `{name}` is not a function")),
            None => return Err(format!("it does not export `{name}`")),
        }
    }
    match export("memory") {
        // An imported memory is refused above, so the index is into this module's own.
        Some((_, ExternalKind::Memory, index)) => match memories.get(*index as usize) {
            Some((false, false)) => Ok(()),
            _ => Err("export `memory` is not a 32-bit, unshared linear memory".into()),
        },
        Some(_) => Err("export `memory` is not a 32-bit, unshared linear memory".into()),
        None => Err("it does not export `memory`".into()),
    }
}

fn signature(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| {
        types
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> {}", list(params), list(results))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component with these imports and exported function names (types are the
    /// worker's concern).
    fn component(imports: &[&str], exports: &[&str]) -> Vec<u8> {
        let imports: String = imports
            .iter()
            .map(|name| format!("(import \"{name}\" (instance))"))
            .collect();
        let exports: String = exports
            .iter()
            .map(|name| format!("(export \"{name}\" (func $f))"))
            .collect();
        wat::parse_str(format!(
            r#"(component {imports}
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "f")))
                {exports})"#
        ))
        .expect("valid component text")
    }

    #[test]
    fn a_component_with_the_worlds_exports_and_allowed_imports_is_an_app() {
        let wasm = component(
            &[HOST_INTERFACE, "wasi:cli/environment@0.2.0"],
            &COMPONENT_EXPORTS,
        );
        assert_eq!(kind(&wasm), Ok(Kind::Component));
        assert_eq!(check(&wasm), Ok(Kind::Component));
        // Stubbed WASI: no imports at all.
        assert_eq!(
            check(&component(&[], &COMPONENT_EXPORTS)),
            Ok(Kind::Component)
        );
    }

    #[test]
    fn a_component_importing_anything_else_is_refused_by_name() {
        let err =
            check(&component(&["evil:net/socket@1.0.0"], &COMPONENT_EXPORTS)).expect_err("refused");
        assert!(err.contains("`evil:net/socket@1.0.0`"), "{err}");
        // WASI, but not the version the worker links.
        let err = check(&component(
            &["wasi:cli/environment@0.3.0"],
            &COMPONENT_EXPORTS,
        ))
        .expect_err("refused");
        assert!(err.contains("`wasi:cli/environment@0.3.0`"), "{err}");
        assert!(err.contains("--stub-wasi"), "{err}");
    }

    #[test]
    fn a_component_without_reduce_is_refused() {
        let err = check(&component(&[HOST_INTERFACE], &["map"])).expect_err("refused");
        assert!(err.contains("does not export `reduce`"), "{err}");
    }

    #[test]
    fn junk_is_neither_form() {
        let err = check(b"not wasm at all").expect_err("refused");
        assert!(err.contains("no \\0asm header"), "{err}");
        let err = check(b"\0asm\x0d\0\x01\0junk").expect_err("refused");
        assert!(err.contains("not a valid WebAssembly component"), "{err}");
    }
}
