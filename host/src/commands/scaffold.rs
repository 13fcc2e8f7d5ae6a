//! `sluice plugin new NAME --lang rust|python|js|c|zig`: a new plugin project
//! from the templates in `host/templates/<lang>/`, compiled into the binary.
//!
//! Promises:
//! - NAME is checked first (lowercase letters, digits and single `-`,
//!   starting with a letter, at most 64 characters) and a bad one is
//!   refused with the problem named.
//! - An existing file or directory at the target path is never touched:
//!   the command refuses before writing anything.
//! - Every scaffold holds a copy of the WIT it is built against under
//!   `wit/` (Rust: the host's `wit/plugin.wit`, 0.2.0 with
//!   `process-batch`; the other languages: `wit/0.1.0/plugin.wit`), a `build.sh` that writes `NAME.wasm`, and a README; the
//!   plugin passes records through, fails empty ones as `invalid` and
//!   refuses unknown parameters, and `sluice plugin run` accepts its build.
//! - The Rust scaffold is its own Cargo workspace, so it builds even when
//!   created inside another one.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::usage;
use crate::cli::{PluginLang, PluginNewArgs};

/// The WIT a Rust scaffold is built against: the host's own, with the
/// batch export (`sluice:plugin@0.2.0`).
const WIT: &str = include_str!("../../../wit/plugin.wit");

/// The WIT the other languages' scaffolds are built against: 0.1.0, one
/// record per call (their templates do not export `process-batch` yet).
const WIT_0_1: &str = include_str!("../../../wit/0.1.0/plugin.wit");

/// The WIT a scaffold in `lang` is built against.
fn wit_for(lang: PluginLang) -> &'static str {
    match lang {
        PluginLang::Rust => WIT,
        _ => WIT_0_1,
    }
}

/// One file of a template: path inside the project, contents, executable.
type TemplateFile = (&'static str, &'static str, bool);

fn template(lang: PluginLang) -> &'static [TemplateFile] {
    match lang {
        PluginLang::Rust => &[
            (
                "Cargo.toml",
                include_str!("../../templates/rust/Cargo.toml.tmpl"),
                false,
            ),
            (
                "src/lib.rs",
                include_str!("../../templates/rust/lib.rs.tmpl"),
                false,
            ),
            (
                "build.sh",
                include_str!("../../templates/rust/build.sh"),
                true,
            ),
            (
                "README.md",
                include_str!("../../templates/rust/README.md"),
                false,
            ),
            (".gitignore", "/target\n*.wasm\nCargo.lock\n", false),
        ],
        PluginLang::Python => &[
            (
                "app.py",
                include_str!("../../templates/python/app.py"),
                false,
            ),
            (
                "build.sh",
                include_str!("../../templates/python/build.sh"),
                true,
            ),
            (
                "README.md",
                include_str!("../../templates/python/README.md"),
                false,
            ),
            (".gitignore", "*.wasm\n__pycache__/\n", false),
        ],
        PluginLang::Js => &[
            ("app.js", include_str!("../../templates/js/app.js"), false),
            (
                "build.sh",
                include_str!("../../templates/js/build.sh"),
                true,
            ),
            (
                "README.md",
                include_str!("../../templates/js/README.md"),
                false,
            ),
            (".gitignore", "*.wasm\n", false),
        ],
        PluginLang::C => &[
            (
                "plugin.c",
                include_str!("../../templates/c/plugin.c"),
                false,
            ),
            ("build.sh", include_str!("../../templates/c/build.sh"), true),
            (
                "README.md",
                include_str!("../../templates/c/README.md"),
                false,
            ),
            (".gitignore", "*.wasm\n", false),
        ],
        PluginLang::Zig => &[
            (
                "main.zig",
                include_str!("../../templates/zig/main.zig"),
                false,
            ),
            (
                "build.sh",
                include_str!("../../templates/zig/build.sh"),
                true,
            ),
            (
                "README.md",
                include_str!("../../templates/zig/README.md"),
                false,
            ),
            (".gitignore", "*.wasm\n.zig-cache/\n", false),
        ],
    }
}

/// What the README says about a language and its toolchain.
fn describe(lang: PluginLang) -> (&'static str, &'static str) {
    match lang {
        PluginLang::Rust => ("Rust", "needs rustup's wasm32-wasip2 target"),
        PluginLang::Python => ("Python", "needs componentize-py 0.25.1"),
        PluginLang::Js => ("JavaScript", "needs componentize-js 0.23.0"),
        PluginLang::C => (
            "C",
            "needs clang-22, wasi-libc, wit-bindgen 0.63.0 and wasm-tools 1.263.0",
        ),
        PluginLang::Zig => (
            "Zig",
            "needs zig 0.17.1, wit-bindgen 0.63.0 and wasm-tools 1.263.0",
        ),
    }
}

/// Checks a plugin name; the error says what is wrong with it.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("plugin name is empty".into());
    }
    if name.len() > 64 {
        return Err(format!(
            "plugin name `{name}` is {} characters long; at most 64",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "plugin name `{name}` contains {c:?}; use lowercase letters a-z, digits and `-`"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("plugin name `{name}` must start with a letter"));
    }
    if name.ends_with('-') || name.contains("--") {
        return Err(format!(
            "plugin name `{name}` has a `-` at the end or two in a row"
        ));
    }
    Ok(())
}

/// Writes a new plugin project for `name` in `lang` at `dir`; returns the
/// files written, relative to `dir`.
pub fn scaffold(name: &str, lang: PluginLang, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    validate_name(name).map_err(|e| usage(anyhow::anyhow!(e)))?;
    if dir.symlink_metadata().is_ok() {
        return Err(usage(anyhow::anyhow!(
            "{} already exists; `sluice plugin new` never overwrites, so choose another name or --dir",
            dir.display()
        )));
    }
    let (lang_name, toolchain) = describe(lang);
    let fill = |s: &str| {
        s.replace("__NAME__", name)
            .replace("__LANG__", lang_name)
            .replace("__TOOLCHAIN__", toolchain)
    };
    let mut files: Vec<(&str, String, bool)> = template(lang)
        .iter()
        .map(|(path, body, exec)| (*path, fill(body), *exec))
        .collect();
    files.push(("wit/plugin.wit", wit_for(lang).to_owned(), false));

    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (path, body, exec) in files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&full, body).with_context(|| format!("cannot write {}", full.display()))?;
        if exec {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", full.display()))?;
        }
        written.push(PathBuf::from(path));
    }
    Ok(written)
}

/// `sluice plugin new`: scaffold, then print the files and next steps.
pub fn run(args: PluginNewArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(&args.name);
    let files = scaffold(&args.name, args.lang, &dir)?;
    let (lang_name, toolchain) = describe(args.lang);
    println!(
        "Created {lang_name} plugin `{}` in {}:",
        args.name,
        dir.display()
    );
    for f in &files {
        println!("  {}", f.display());
    }
    println!();
    println!("Next steps:");
    println!("  cd {}", dir.display());
    println!(
        "  ./build.sh        # writes {}.wasm; {toolchain}",
        args.name
    );
    println!(
        "  echo '{{\"key\":\"k\",\"value\":\"hello\"}}' | sluice plugin run {}.wasm --format jsonl",
        args.name
    );
    if args.lang != PluginLang::Rust {
        println!(
            "  (toolchains: `just toolchains` in the sluice repository installs them under ~/.cache/sluice/toolchains)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names() {
        for n in ["a", "calorie-alert", "x2", "my-plugin-3"] {
            assert_eq!(validate_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn bad_names_say_why() {
        for (n, why) in [
            ("", "empty"),
            ("Foo", "contains 'F'"),
            ("my_plugin", "contains '_'"),
            ("a/b", "contains '/'"),
            ("..", "contains '.'"),
            ("1st", "start with a letter"),
            ("-x", "start with a letter"),
            ("x-", "at the end"),
            ("a--b", "two in a row"),
        ] {
            let err = validate_name(n).unwrap_err();
            assert!(err.contains(why), "{n}: {err}");
        }
        assert!(validate_name(&"a".repeat(65)).unwrap_err().contains("64"));
    }

    #[test]
    fn refuses_an_existing_directory_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("taken");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        let err = scaffold("taken", PluginLang::Python, &dir).unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn every_language_gets_the_wit_a_build_script_and_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        for lang in [
            PluginLang::Rust,
            PluginLang::Python,
            PluginLang::Js,
            PluginLang::C,
            PluginLang::Zig,
        ] {
            let dir = tmp.path().join(format!("{lang:?}").to_lowercase());
            let files = scaffold("demo-plugin", lang, &dir).unwrap();
            assert!(files.contains(&PathBuf::from("build.sh")));
            assert_eq!(
                std::fs::read_to_string(dir.join("wit/plugin.wit")).unwrap(),
                wit_for(lang)
            );
            for f in &files {
                let body = std::fs::read_to_string(dir.join(f)).unwrap();
                assert!(!body.contains("__NAME__"), "{lang:?} {}", f.display());
            }
        }
    }
}
