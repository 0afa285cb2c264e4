//! The checked-in generated code must match what the schema compiles to.

use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compile_into(out: &Path) {
    let dir = manifest_dir();
    let mut cmd = capnpc::CompilerCommand::new();
    cmd.src_prefix(&dir).output_path(out);
    for f in capnet_schema::SCHEMA_FILES {
        cmd.file(dir.join(f));
    }
    cmd.run()
        .expect("the capnp tool is needed to check the generated code: apt-get install capnproto");
}

#[test]
fn generated_code_is_current() {
    let generated = manifest_dir().join("src/generated");
    if std::env::var_os("CAPNET_REGENERATE").is_some() {
        compile_into(&generated);
        return;
    }
    let tmp = std::env::temp_dir().join(format!("capnet-schema-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    compile_into(&tmp);
    for f in capnet_schema::SCHEMA_FILES {
        let name = f.replace(".capnp", "_capnp.rs");
        let fresh = std::fs::read_to_string(tmp.join(&name)).unwrap();
        let checked_in = std::fs::read_to_string(generated.join(&name)).unwrap();
        assert!(
            fresh == checked_in,
            "src/generated/{name} is stale: run CAPNET_REGENERATE=1 cargo test -p capnet-schema"
        );
    }
    std::fs::remove_dir_all(&tmp).ok();
}
