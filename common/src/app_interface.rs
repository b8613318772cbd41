//! What makes a Wasm module an mr app (apps-wasm/README.md, "The ABI"): a valid module
//! that imports only the host functions of module "mr" and exports `memory` and the four
//! `mr_*` functions with their types. Checked by the coordinator when an app is uploaded
//! and by the worker before it compiles one, with the same messages.

use wasmparser::{CompositeInnerType, ExternalKind, Payload, TypeRef, ValType, Validator};

/// The functions of import module "mr", the only imports an app may have.
pub const HOST_FUNCTIONS: [&str; 5] = ["log", "fail", "random_u64", "sleep_ms", "counter"];

/// The function exports an app must have, with their types.
const EXPORTS: [(&str, &str); 4] = [
    ("mr_abi_version", "() -> i32"),
    ("mr_alloc", "(i32) -> i32"),
    ("mr_map", "(i32, i32) -> i64"),
    ("mr_reduce", "(i32, i32) -> i64"),
];

/// Whether `wasm` is a valid module with the app interface; if not, what is wrong, in a
/// sentence that can follow "the module is not an app: ".
pub fn check(wasm: &[u8]) -> Result<(), String> {
    if !wasm.starts_with(b"\0asm") {
        return Err("it is not a WebAssembly module (no \\0asm header)".into());
    }
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
