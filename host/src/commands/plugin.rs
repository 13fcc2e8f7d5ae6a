//! `sluice plugin run` and `sluice plugin inspect`: a plugin over local input,
//! no Kafka needed.
//!
//! Promise: every input record yields output lines or exactly one error line
//! on stdout, and processing goes on after a failed record. Exit status is 0
//! when every record was processed, 2 for usage, config or loading errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{bytes_to_json, usage};
use crate::cli::{InputFormat, PluginRunArgs};
use crate::config::http::HttpConfig;
use crate::plugin::{Header, Input, Instance, Limits, Output, Plugin, Runtime};

/// Load a plugin for a command, turning load errors into usage errors.
pub fn load(runtime: &Runtime, path: &Path) -> anyhow::Result<Arc<Plugin>> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    runtime.load(path, &name).map_err(usage)
}

/// Runs `sluice plugin run`: feeds the input records to one instance of the
/// plugin and writes one JSON line per output, or per failed record, to
/// stdout. Input that cannot be found or a plugin that does not load is a
/// usage error; a record that fails is not.
pub fn run(runtime: &Runtime, args: PluginRunArgs) -> anyhow::Result<()> {
    let plugin = load(runtime, &args.plugin)?;
    let http = http_config(&args);
    let mut limits = Limits::default();
    if let Some(m) = args.memory {
        limits.memory = m;
    }
    if let Some(d) = args.init_deadline {
        limits.init_deadline = d;
    }
    match (args.deadline, &http) {
        (Some(d), _) => limits.deadline = d,
        // The deadline keeps running while the host fetches; without this a
        // fetch slower than the default 100ms would fail every record.
        (None, Some(h)) => limits.deadline = h.timeout + limits.deadline,
        (None, None) => {}
    }
    let mut instance =
        Instance::with_http(plugin, args.config.clone(), limits, http.as_ref()).map_err(usage)?;

    let mut sources: Vec<PathBuf> = args.files.clone();
    if let Some(input) = &args.input {
        sources.push(input.clone());
    }
    if sources.is_empty() {
        if args.format == InputFormat::Raw {
            return Err(usage(anyhow::anyhow!(
                "no input: give FILES or --input FILE|- (raw format reads one record per file)"
            )));
        }
        sources.push(PathBuf::from("-"));
    }
    // Check every file up front so a typo fails before any output.
    for src in &sources {
        if src != Path::new("-") && !src.is_file() {
            return Err(usage(anyhow::anyhow!(
                "input file {} does not exist or is not a file",
                src.display()
            )));
        }
    }

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut runner = Runner {
        instance: &mut instance,
        out: &mut out,
        offset: 0,
    };
    let many = sources.len() > 1;
    for src in &sources {
        match args.format {
            InputFormat::Raw => {
                let value = read_all(src)?;
                runner.record(json!(src.display().to_string()), None, value, Vec::new())?;
            }
            InputFormat::Lines | InputFormat::Jsonl => {
                let reader = open(src)?;
                for (i, line) in reader.split(b'\n').enumerate() {
                    let mut line =
                        line.with_context(|| format!("cannot read {}", src.display()))?;
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    let id = if many {
                        json!(format!("{}:{}", src.display(), i + 1))
                    } else {
                        json!(i + 1)
                    };
                    if args.format == InputFormat::Lines {
                        runner.record(id, None, line, Vec::new())?;
                        continue;
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match JsonlRecord::parse(&line) {
                        Ok(r) => runner.record(id, r.key, r.value, r.headers)?,
                        Err(message) => runner.emit(&json!({
                            "input": id,
                            "error": {"kind": "input", "message": message},
                        }))?,
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// The `http` config the flags ask for; none (deny all) without any.
fn http_config(args: &PluginRunArgs) -> Option<HttpConfig> {
    if args.allow_host.is_empty() && args.http_timeout.is_none() && !args.allow_private {
        return None;
    }
    let mut http = HttpConfig {
        allow: args.allow_host.clone(),
        allow_private: args.allow_private,
        ..HttpConfig::default()
    };
    if let Some(t) = args.http_timeout {
        http.timeout = t;
    }
    Some(http)
}

struct Runner<'a, W: Write> {
    instance: &'a mut Instance,
    out: &'a mut W,
    offset: i64,
}

impl<W: Write> Runner<'_, W> {
    fn record(
        &mut self,
        id: Value,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        headers: Vec<Header>,
    ) -> anyhow::Result<()> {
        let input = Input {
            topic: String::new(),
            partition: 0,
            offset: self.offset,
            timestamp: None,
            key,
            value,
            headers,
        };
        self.offset += 1;
        match self.instance.process(&input) {
            Ok(outputs) => {
                for o in outputs {
                    self.emit(&output_json(&id, o))?;
                }
            }
            Err(e) => self.emit(&json!({
                "input": id,
                "error": {"kind": e.kind().as_str(), "message": e.message()},
            }))?,
        }
        Ok(())
    }

    fn emit(&mut self, v: &Value) -> anyhow::Result<()> {
        serde_json::to_writer(&mut *self.out, v)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }
}

pub(crate) fn output_json(id: &Value, o: Output) -> Value {
    let mut m = Map::new();
    m.insert("input".into(), id.clone());
    m.insert("route".into(), o.route.map_or(Value::Null, Value::String));
    match o.key {
        Some(k) => {
            let (k, b64) = bytes_to_json(&k);
            m.insert("key".into(), k);
            if b64 {
                m.insert("key_encoding".into(), json!("base64"));
            }
        }
        None => {
            m.insert("key".into(), Value::Null);
        }
    }
    let (v, b64) = bytes_to_json(&o.value);
    m.insert("value".into(), v);
    if b64 {
        m.insert("value_encoding".into(), json!("base64"));
    }
    let headers: Map<String, Value> = o
        .headers
        .iter()
        .map(|h| (h.name.clone(), bytes_to_json(&h.value).0))
        .collect();
    m.insert("headers".into(), Value::Object(headers));
    Value::Object(m)
}

/// One line of `--format jsonl` input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlLine {
    #[serde(default)]
    key: Option<String>,
    value: Value,
    #[serde(default)]
    headers: Map<String, Value>,
}

/// A parsed JSONL record, ready to become an `Input`.
pub struct JsonlRecord {
    /// The `key` as UTF-8 bytes; `None` when the line has none.
    pub key: Option<Vec<u8>>,
    /// The value: a string's UTF-8 bytes, or the JSON text of any other value.
    pub value: Vec<u8>,
    /// The `headers` object's entries, valued like `value`.
    pub headers: Vec<Header>,
}

impl JsonlRecord {
    /// Parse one line. A string `value` is taken as-is; any other JSON value
    /// is serialised, so `{"value": {"a": 1}}` carries the object's JSON text.
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        let l: JsonlLine =
            serde_json::from_slice(line).map_err(|e| format!("bad JSONL record: {e}"))?;
        let value = match l.value {
            Value::String(s) => s.into_bytes(),
            other => other.to_string().into_bytes(),
        };
        let headers = l
            .headers
            .into_iter()
            .map(|(name, v)| Header {
                name,
                value: match v {
                    Value::String(s) => s.into_bytes(),
                    other => other.to_string().into_bytes(),
                },
            })
            .collect();
        Ok(JsonlRecord {
            key: l.key.map(String::into_bytes),
            value,
            headers,
        })
    }
}

fn open(src: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if src == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let f = std::fs::File::open(src)
        .with_context(|| format!("cannot open input {}", src.display()))
        .map_err(usage)?;
    Ok(Box::new(BufReader::new(f)))
}

fn read_all(src: &Path) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    open(src)?
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {}", src.display()))?;
    Ok(buf)
}

/// Runs `sluice plugin inspect`: prints, as pretty JSON, the world the plugin
/// implements, its SHA-256 content hash, and its component's imports and
/// exports.
pub fn inspect(runtime: &Runtime, path: &Path) -> anyhow::Result<()> {
    let plugin = load(runtime, path)?;
    let ty = plugin.component().component_type();
    let engine = runtime.engine();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let report = json!({
        "path": path.display().to_string(),
        "world": match plugin.wit_version() {
            "0.1.0" => crate::plugin::bindings::WORLD_0_1,
            _ => crate::plugin::bindings::WORLD,
        },
        "sha256": plugin.hash(),
        "imports": imports,
        "exports": exports,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_values() {
        let r = JsonlRecord::parse(br#"{"key":"k","value":{"a":1},"headers":{"h":"v"}}"#).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value, br#"{"a":1}"#);
        assert_eq!(r.headers[0].name, "h");
        let err = JsonlRecord::parse(br#"{"value":"x","extra":1}"#)
            .err()
            .unwrap();
        assert!(err.contains("extra"), "{err}");
        assert!(JsonlRecord::parse(b"not json").is_err());
    }

    #[test]
    fn non_utf8_is_base64() {
        let o = Output {
            route: None,
            key: Some(vec![0xff]),
            value: vec![0xfe, 0x00],
            headers: vec![],
        };
        let v = output_json(&json!(1), o);
        assert_eq!(v["value_encoding"], "base64");
        assert_eq!(v["key_encoding"], "base64");
        assert_eq!(v["value"], "/gA=");
    }
}
