//! The pipeline-file reference in `docs/config.md` is generated from the
//! config types' `///` docs, and this test keeps the two in step: it reads
//! the config types' source, renders every key of the pipeline file (its
//! type, default and doc), and fails when the generated section of
//! `docs/config.md` differs, or when a key or a type has no doc. So a new
//! field cannot go undocumented, and a changed doc or default cannot leave
//! the reference behind.
//!
//! `SLUICE_BLESS=1 cargo test --test config_reference` (or `just docs`)
//! rewrites the section.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use syn::{Attribute, Expr, Fields, GenericArgument, Item, Lit, PathArguments, Type};

const BEGIN: &str = "<!-- BEGIN GENERATED: sluice config reference -->";
const END: &str = "<!-- END GENERATED -->";

/// The files that hold the types a pipeline file deserializes into.
const SOURCES: &[&str] = &[
    "host/src/config/pipeline.rs",
    "host/src/config/kafka.rs",
    "host/src/config/admin.rs",
    "host/src/config/http.rs",
    "host/src/config/plugin.rs",
    "host/src/config/sql.rs",
    "host/src/plugin/limits.rs",
    "host/src/source/sql.rs",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn docs_config_md_matches_the_config_types() {
    let model = Model::load();
    let generated = model.render();
    let path = root().join("docs/config.md");
    let doc = std::fs::read_to_string(&path).expect("docs/config.md");
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/config.md lacks the markers {BEGIN} … {END}");
    };
    let current = doc[b + BEGIN.len()..e].trim();
    if current == generated.trim() {
        return;
    }
    if std::env::var_os("SLUICE_BLESS").is_some() {
        let updated = format!(
            "{}{BEGIN}\n\n{}\n\n{}",
            &doc[..b],
            generated.trim(),
            &doc[e..]
        );
        std::fs::write(&path, updated).expect("write docs/config.md");
        return;
    }
    let first = current
        .lines()
        .zip(generated.trim().lines())
        .position(|(a, b)| a != b)
        .unwrap_or(current.lines().count().min(generated.lines().count()));
    panic!(
        "docs/config.md is out of date with the config types (first difference at line {} of the \
         generated section):\n  docs:      {:?}\n  generated: {:?}\nRegenerate it with `just docs` \
         (SLUICE_BLESS=1 cargo test --test config_reference).",
        first + 1,
        current.lines().nth(first).unwrap_or("<end>"),
        generated.trim().lines().nth(first).unwrap_or("<end>"),
    );
}

/// One deserialized struct or enum, as written in the source.
enum Def {
    Struct {
        doc: String,
        fields: Vec<Field>,
        /// `#[serde(default)]` on the struct: missing keys take the
        /// `Default` impl's values.
        defaulted: bool,
        /// The `Default` impl's field expressions, when it has one.
        defaults: HashMap<String, String>,
    },
    Enum {
        /// The accepted spellings.
        variants: Vec<String>,
        /// `#[serde(untagged)]`: the variants are types, not names.
        untagged: bool,
    },
}

struct Field {
    rust: String,
    key: String,
    doc: String,
    ty: Type,
    flatten: bool,
    /// `Some(None)`: `#[serde(default)]`; `Some(Some(f))`: `default = "f"`.
    default: Option<Option<String>>,
    /// Deserialized with `humantime_serde` (a duration such as "30s").
    duration: bool,
    /// Deserialized as a byte size (a number or a string such as "64MiB").
    bytes: bool,
    /// Deserialized by a function accepting `true`, `false` or a string.
    custom: Option<String>,
}

struct Model {
    defs: BTreeMap<String, Def>,
    /// Free functions' bodies and consts' values, by name: where defaults
    /// come from.
    values: HashMap<String, String>,
}

impl Model {
    fn load() -> Model {
        let mut model = Model {
            defs: BTreeMap::new(),
            values: HashMap::new(),
        };
        let mut impls = Vec::new();
        for file in SOURCES {
            let text = std::fs::read_to_string(root().join(file)).expect(file);
            let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            for item in ast.items {
                match item {
                    Item::Struct(s) if derives_deserialize(&s.attrs) => {
                        let name = s.ident.to_string();
                        let doc = doc(&s.attrs);
                        assert!(!doc.is_empty(), "{file}: struct {name} has no `///` doc");
                        let defaulted = serde_flags(&s.attrs).contains_key("default");
                        let Fields::Named(named) = s.fields else {
                            panic!("{file}: {name} is not a struct with named fields")
                        };
                        let fields = named
                            .named
                            .into_iter()
                            .map(|f| field(file, &name, f))
                            .collect();
                        model.defs.insert(
                            name,
                            Def::Struct {
                                doc,
                                fields,
                                defaulted,
                                defaults: HashMap::new(),
                            },
                        );
                    }
                    Item::Enum(e) if derives_deserialize(&e.attrs) => {
                        let flags = serde_flags(&e.attrs);
                        let untagged = flags.contains_key("untagged");
                        let rename_all = flags.get("rename_all").cloned().flatten();
                        let variants = e
                            .variants
                            .iter()
                            .map(|v| {
                                if untagged {
                                    let Fields::Unnamed(u) = &v.fields else {
                                        panic!("{file}: untagged variant {} has no type", v.ident)
                                    };
                                    return type_name(&u.unnamed[0].ty);
                                }
                                let name = serde_flags(&v.attrs)
                                    .get("rename")
                                    .cloned()
                                    .flatten()
                                    .unwrap_or_else(|| {
                                        rename(&v.ident.to_string(), rename_all.as_deref())
                                    });
                                match &v.fields {
                                    Fields::Unit => format!("`\"{name}\"`"),
                                    Fields::Unnamed(u) => format!(
                                        "`{{ {name} = <{}> }}`",
                                        type_name(&u.unnamed[0].ty)
                                    ),
                                    Fields::Named(_) => format!("`{{ {name} = {{ … }} }}`"),
                                }
                            })
                            .collect();
                        model
                            .defs
                            .insert(e.ident.to_string(), Def::Enum { variants, untagged });
                    }
                    Item::Fn(f) => {
                        let body = &f.block.stmts;
                        if let [syn::Stmt::Expr(e, None)] = body.as_slice() {
                            model.values.insert(f.sig.ident.to_string(), source(e));
                        }
                    }
                    Item::Const(c) => {
                        model.values.insert(c.ident.to_string(), source(&c.expr));
                    }
                    Item::Impl(i) => impls.push(i),
                    _ => {}
                }
            }
        }
        // The `Default` impls of structs marked `#[serde(default)]`.
        for i in impls {
            let Some((_, trait_path, _)) = &i.trait_ else {
                continue;
            };
            if trait_path
                .segments
                .last()
                .is_none_or(|s| s.ident != "Default")
            {
                continue;
            }
            let Type::Path(self_ty) = &*i.self_ty else {
                continue;
            };
            let name = self_ty.path.segments[0].ident.to_string();
            let Some(Def::Struct { defaults, .. }) = model.defs.get_mut(&name) else {
                continue;
            };
            for item in &i.items {
                let syn::ImplItem::Fn(f) = item else { continue };
                if let Some(syn::Stmt::Expr(Expr::Struct(s), None)) = f.block.stmts.last() {
                    for fv in &s.fields {
                        if let syn::Member::Named(id) = &fv.member {
                            defaults.insert(id.to_string(), source(&fv.expr));
                        }
                    }
                }
            }
        }
        model
    }

    /// The whole generated section.
    fn render(&self) -> String {
        // Walk from the file's top level, collecting where each struct
        // appears, in first-seen order.
        let mut order: Vec<String> = Vec::new();
        let mut places: HashMap<String, Vec<String>> = HashMap::new();
        self.walk("File", "", &mut order, &mut places);
        let mut out = String::new();
        for name in &order {
            let Some(Def::Struct { doc, .. }) = self.defs.get(name) else {
                continue;
            };
            let at = &places[name];
            let heading = if at == &[String::new()] {
                "The top level".to_owned()
            } else {
                at.iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!("### {heading}\n\n{}\n\n", one_paragraph(doc)));
            out.push_str("| Key | Type | Default | Meaning |\n|---|---|---|---|\n");
            for (owner, f) in self.keys(name) {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    f.key,
                    self.describe_type(f),
                    self.default(owner, f),
                    cell(&f.doc)
                ));
            }
            out.push('\n');
        }
        out
    }

    /// A struct's keys, with flattened structs' keys in place, each with
    /// the struct that declares it.
    fn keys<'a>(&'a self, name: &'a str) -> Vec<(&'a str, &'a Field)> {
        let Some(Def::Struct { fields, .. }) = self.defs.get(name) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for f in fields {
            if f.flatten {
                let Some((owner, _)) = self.defs.get_key_value(&inner(&f.ty).0) else {
                    panic!("{name}.{}: flattened type not found", f.rust)
                };
                keys.extend(self.keys(owner));
            } else {
                keys.push((name, f));
            }
        }
        keys
    }

    fn walk(
        &self,
        name: &str,
        path: &str,
        order: &mut Vec<String>,
        places: &mut HashMap<String, Vec<String>>,
    ) {
        if !order.iter().any(|n| n == name) {
            order.push(name.to_owned());
        }
        places
            .entry(name.to_owned())
            .or_default()
            .push(path.to_owned());
        for (_, f) in self.keys(name) {
            let (ty, shape) = inner(&f.ty);
            if !matches!(self.defs.get(&ty), Some(Def::Struct { .. })) {
                continue;
            }
            let base = path.trim_start_matches("[[").trim_start_matches('[');
            let base = base.trim_end_matches("]]").trim_end_matches(']');
            let dotted = if base.is_empty() {
                f.key.clone()
            } else {
                format!("{base}.{}", f.key)
            };
            let at = match shape {
                Shape::List => format!("[[{dotted}]]"),
                Shape::Map => format!("[{dotted}.<name>]"),
                Shape::One => format!("[{dotted}]"),
            };
            self.walk(&ty, &at, order, places);
        }
    }

    fn describe_type(&self, f: &Field) -> String {
        if f.duration {
            return "duration (\"30s\", \"100ms\")".into();
        }
        if f.bytes {
            return "size (bytes, or \"64MiB\")".into();
        }
        if let Some(how) = &f.custom {
            return how.clone();
        }
        let (ty, shape) = inner(&f.ty);
        let one = match self.defs.get(&ty) {
            Some(Def::Enum {
                variants,
                untagged: true,
            }) => match variants.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            },
            Some(Def::Enum { variants, .. }) => format!("one of {}", variants.join(", ")),
            Some(Def::Struct { .. }) => "table".into(),
            None => type_name(&f.ty),
        };
        match (shape, self.defs.get(&ty)) {
            (Shape::One, _) | (_, None) => one,
            (Shape::List, _) => format!("list of {one}"),
            (Shape::Map, _) => format!("table of {one}"),
        }
    }

    fn default(&self, owner: &str, f: &Field) -> String {
        let from_impl = || match self.defs.get(owner) {
            Some(Def::Struct {
                defaulted: true,
                defaults,
                ..
            }) => defaults.get(&f.rust).cloned(),
            _ => None,
        };
        let expr = match &f.default {
            Some(Some(func)) => self.values.get(func).cloned(),
            Some(None) => None,
            None => match from_impl() {
                Some(e) => Some(e),
                None if optional(&f.ty) => return "none".into(),
                None => return "required".into(),
            },
        };
        let Some(expr) = expr else {
            return self.type_default(f);
        };
        self.value(&expr, f)
    }

    /// What `Default::default()` gives for a field's type.
    fn type_default(&self, f: &Field) -> String {
        let (ty, shape) = inner(&f.ty);
        if optional(&f.ty) {
            return "none".into();
        }
        match shape {
            Shape::List | Shape::Map => return "empty".into(),
            Shape::One => {}
        }
        match (self.defs.get(&ty), ty.as_str()) {
            (Some(Def::Struct { .. }), _) => "see its table".into(),
            (Some(Def::Enum { variants, .. }), _) => variants.first().cloned().unwrap_or_default(),
            (None, "bool") => "`false`".into(),
            (None, "String") => "`\"\"`".into(),
            (None, _) => "`0`".into(),
        }
    }

    /// A default's source expression, as a user would write the value.
    fn value(&self, expr: &str, f: &Field) -> String {
        let expr = expr.trim();
        if let Some(v) = self.values.get(expr) {
            return self.value(v, f);
        }
        let call = |prefix: &str| {
            expr.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(')'))
                .map(str::trim)
        };
        if let Some(n) = call("Duration::from_secs(") {
            return format!("`\"{n}s\"`");
        }
        if let Some(n) = call("Duration::from_millis(") {
            return format!("`\"{n}ms\"`");
        }
        if expr == "None" {
            return "none".into();
        }
        if let Some(s) = expr
            .strip_suffix(".into()")
            .or_else(|| expr.strip_suffix(".to_owned()"))
            .or_else(|| expr.strip_suffix(".to_string()"))
        {
            return self.value(s, f);
        }
        if expr.starts_with('"') {
            return format!("`{expr}`");
        }
        // format!("sluice/{}", env!("CARGO_PKG_VERSION"))
        if let Some(args) = expr.strip_prefix("format!(")
            && let Some((template, "env!(\"CARGO_PKG_VERSION\"))")) = args.split_once(", ")
        {
            return format!("`{}`", template.replace("{}", "<version>"));
        }
        // SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9465)
        if let Some(port) = expr
            .strip_prefix("SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST),")
            .and_then(|r| r.strip_suffix(')'))
        {
            return format!("`\"127.0.0.1:{}\"`", port.trim());
        }
        if let Some(n) = product(expr) {
            if f.bytes && n % (1024 * 1024) == 0 {
                return format!("`\"{}MiB\"`", n / (1024 * 1024));
            }
            return format!("`{n}`");
        }
        if let Some(addr) = call("SocketAddr::from(") {
            // ([127, 0, 0, 1], 9091)
            let digits: Vec<&str> = addr
                .trim_matches(|c| c == '(' || c == ')')
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .collect();
            if let [a, b, c, d, port] = digits.as_slice() {
                return format!("`\"{a}.{b}.{c}.{d}:{port}\"`");
            }
        }
        match expr {
            "true" | "false" => format!("`{expr}`"),
            _ => format!("`{expr}` (in code)"),
        }
    }
}

#[derive(Clone, Copy)]
enum Shape {
    One,
    List,
    Map,
}

/// The type inside `Option`/`Vec`/maps, and whether it is a list or map.
fn inner(ty: &Type) -> (String, Shape) {
    let Type::Path(p) = ty else {
        return (String::new(), Shape::One);
    };
    let seg = p.path.segments.last().expect("a type path");
    let args: Vec<&Type> = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    match (seg.ident.to_string().as_str(), args.as_slice()) {
        ("Option", [t]) => inner(t),
        ("Vec", [t]) => (inner(t).0, Shape::List),
        ("BTreeMap" | "HashMap", [_, v]) => (inner(v).0, Shape::Map),
        (name, _) => (name.to_owned(), Shape::One),
    }
}

fn optional(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

/// A plain type as a pipeline-file user knows it.
fn type_name(ty: &Type) -> String {
    let Type::Path(p) = ty else {
        return "value".into();
    };
    let seg = p.path.segments.last().expect("a type path");
    let arg = || match &seg.arguments {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|g| match g {
            GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    };
    let name = seg.ident.to_string();
    match name.as_str() {
        "String" | "str" => "string".into(),
        "bool" => "boolean".into(),
        "f32" | "f64" => "float".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" => "integer".into(),
        "PathBuf" => "path".into(),
        "SocketAddr" => "address (\"host:port\")".into(),
        "Secret" => "string (secret: never logged)".into(),
        "DbUrl" => "database URL (password never logged)".into(),
        "Option" => arg().map_or("value".into(), |t| type_name(&t)),
        "Vec" => arg().map_or("list".into(), |t| format!("list of {}", type_name(&t))),
        "BTreeMap" | "HashMap" => match &seg.arguments {
            PathArguments::AngleBracketed(a) => match a.args.iter().nth(1) {
                Some(GenericArgument::Type(v)) => {
                    format!("table of {}", type_name(v))
                }
                _ => "table".into(),
            },
            _ => "table".into(),
        },
        other => other.to_owned(),
    }
}

fn derives_deserialize(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("derive") && {
            let mut found = false;
            let _ = a.parse_nested_meta(|m| {
                found |= m
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "Deserialize");
                Ok(())
            });
            found
        }
    })
}

/// `#[serde(...)]` entries: `name` → its string value, if any.
fn serde_flags(attrs: &[Attribute]) -> HashMap<String, Option<String>> {
    let mut flags = HashMap::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        a.parse_nested_meta(|m| {
            let key = m
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            let value = match m.value() {
                Ok(v) => match v.parse::<Lit>()? {
                    Lit::Str(s) => Some(s.value()),
                    _ => None,
                },
                Err(_) => None,
            };
            flags.insert(key, value);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("unreadable #[serde] attribute: {e}"));
    }
    flags
}

fn field(file: &str, owner: &str, f: syn::Field) -> Field {
    let rust = f.ident.as_ref().expect("a named field").to_string();
    let flags = serde_flags(&f.attrs);
    let doc = doc(&f.attrs);
    let flatten = flags.contains_key("flatten");
    assert!(
        flatten || !doc.is_empty(),
        "{file}: {owner}.{rust} has no `///` doc: every key of the pipeline file is documented"
    );
    let with = flags.get("with").cloned().flatten();
    let de = flags.get("deserialize_with").cloned().flatten();
    let duration = with.as_deref() == Some("humantime_serde");
    let bytes = de.as_deref().is_some_and(|d| d.contains("bytes::"));
    let custom = match de.as_deref() {
        Some("bool_or_string") => Some("boolean (or \"true\"/\"false\" from `${…}`)".to_owned()),
        Some(d) if !d.contains("bytes::") => Some(format!("see `{d}`")),
        _ => None,
    };
    Field {
        key: flags
            .get("rename")
            .cloned()
            .flatten()
            .unwrap_or_else(|| rust.clone()),
        rust,
        doc,
        ty: f.ty,
        flatten,
        default: flags.get("default").cloned(),
        duration,
        bytes,
        custom,
    }
}

/// The `///` doc of an item, lines joined.
fn doc(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        if let syn::Meta::NameValue(nv) = &a.meta
            && let Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
        {
            lines.push(s.value().trim().to_owned());
        }
    }
    lines.join("\n").trim().to_owned()
}

/// The first paragraph of a doc, on one line.
fn one_paragraph(doc: &str) -> String {
    doc.split("\n\n").next().unwrap_or("").replace('\n', " ")
}

/// A doc as one table cell: paragraphs kept apart by `<br>`, pipes escaped.
fn cell(doc: &str) -> String {
    doc.split("\n\n")
        .map(|p| p.replace('\n', " "))
        .collect::<Vec<_>>()
        .join("<br>")
        .replace('|', "\\|")
}

fn rename(variant: &str, rule: Option<&str>) -> String {
    let words: Vec<String> = {
        let mut w = Vec::new();
        let mut cur = String::new();
        for c in variant.chars() {
            if c.is_uppercase() && !cur.is_empty() {
                w.push(std::mem::take(&mut cur));
            }
            cur.push(c);
        }
        w.push(cur);
        w
    };
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    match rule {
        Some("lowercase") => variant.to_lowercase(),
        Some("snake_case") => lower.join("_"),
        Some("kebab-case") => lower.join("-"),
        Some("UPPERCASE") => variant.to_uppercase(),
        _ => variant.to_owned(),
    }
}

/// The source text of an expression, normalised.
fn source(e: &Expr) -> String {
    use quote::ToTokens as _;
    let s = e.to_token_stream().to_string();
    // `quote` spaces every token; close up the common cases.
    s.replace(" :: ", "::")
        .replace(" !", "!")
        .replace(" (", "(")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(" . ", ".")
        .replace(" ,", ",")
        .replace("[ ", "[")
        .replace(" ]", "]")
}

/// `64 * 1024 * 1024`, `10_000`: the value of a product of integers.
fn product(expr: &str) -> Option<u64> {
    expr.split('*').try_fold(1u64, |acc, n| {
        let n: u64 = n.trim().replace('_', "").parse().ok()?;
        acc.checked_mul(n)
    })
}
