//! A model's own chat template, rendered as Hugging Face transformers renders it: Jinja with
//! `trim_blocks` and `lstrip_blocks`, the variables `messages`, `add_generation_prompt`,
//! `bos_token` and `eos_token`, the functions `raise_exception` and `strftime_now`, Python's
//! string and dict methods, and a `tojson` that writes what Python's `json.dumps` writes.
//!
//! The template comes from the GGUF `tokenizer.chat_template`, else the `chat_template` of a
//! `tokenizer_config.json` beside the model; the built-in templates are the fallback.

use bitnet_infer::chat::{ChatTemplate, Message, PromptTemplate};
use bitnet_infer::{Engine, InferError, Result, Tokenizer};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use std::path::Path;

/// A Jinja chat template.
#[derive(Debug)]
pub struct JinjaTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

fn template_err(e: Error) -> InferError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    InferError::Template(msg)
}

impl JinjaTemplate {
    /// Compiles `source`; `bos` and `eos` are the tokens' text.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| strftime(&fmt, unix_now()));
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_string()).map_err(template_err)?;
        Ok(Self { env, bos: bos.into(), eos: eos.into() })
    }

    /// The prompt of `messages`, with the assistant's turn opened when `add_generation_prompt`.
    pub fn render_with(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_iter([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let ctx = minijinja::context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        };
        self.env.get_template("chat").and_then(|t| t.render(ctx)).map_err(template_err)
    }
}

impl PromptTemplate for JinjaTemplate {
    fn render_prompt(&self, messages: &[Message]) -> Result<String> {
        self.render_with(messages, true)
    }
    fn name(&self) -> &'static str {
        "the model's Jinja"
    }
}

/// The `chat_template` of a `tokenizer_config.json`: a string, or a list of named templates of
/// which the `default` one is taken.
pub fn template_from_tokenizer_config(json: &serde_json::Value) -> Option<String> {
    match &json["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(String::from),
        _ => None,
    }
}

/// The model's Jinja template source, from the GGUF header or a `tokenizer_config.json` beside
/// (or, for a directory, inside) the model.
pub fn model_template_source(engine: &Engine, model_path: &Path) -> Option<String> {
    let gguf = engine.model.gguf.as_ref();
    if let Some(s) = gguf.and_then(|g| g.header.get("tokenizer.chat_template")?.as_str()) {
        return Some(s.to_string());
    }
    let cfg = if model_path.is_dir() {
        model_path.join("tokenizer_config.json")
    } else {
        model_path.with_file_name("tokenizer_config.json")
    };
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cfg).ok()?).ok()?;
    template_from_tokenizer_config(&json)
}

/// The chat template to use: `name` (`chatml`, `bitnet`, or `jinja` for the model's own) when
/// given; else the model's Jinja template; else the built-in one its vocabulary suggests.
pub fn chat_template(
    engine: &Engine,
    tok: &Tokenizer,
    model_path: &Path,
    name: Option<&str>,
) -> Result<Box<dyn PromptTemplate>> {
    let source = model_template_source(engine, model_path);
    let jinja = |src: &str| -> Result<Box<dyn PromptTemplate>> {
        let text = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i)).unwrap_or_default();
        Ok(Box::new(JinjaTemplate::new(src, &text(tok.bos), &text(tok.eos))?))
    };
    match name {
        Some("jinja") => match &source {
            Some(src) => jinja(src),
            None => Err(InferError::Template("the model carries no chat template".into())),
        },
        Some(n) => match ChatTemplate::from_name(n) {
            Some(t) => Ok(Box::new(t)),
            None => Err(InferError::Template(format!(
                "unknown template {n:?}: expected jinja, chatml or bitnet"
            ))),
        },
        None => match &source {
            Some(src) => jinja(src),
            None => match ChatTemplate::detect(None, tok) {
                Some(t) => Ok(Box::new(t)),
                None => Err(InferError::Template(
                    "the model has no chat template and its vocabulary suggests none: choose \
                     chatml or bitnet"
                        .into(),
                )),
            },
        },
    }
}

/// Python's `json.dumps(value, ensure_ascii=False)` (separators `", "` and `": "`), or with
/// `indent` spaces per level as `json.dumps(..., indent=n)` writes.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_py_json(&value, indent, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// Python's JSON of `v`: maps keep their order, as Python's dicts do.
fn write_py_json(
    v: &Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> std::result::Result<(), Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    let json_err = |e: serde_json::Error| Error::new(ErrorKind::InvalidOperation, e.to_string());
    match v.kind() {
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            let is_map = v.kind() == ValueKind::Map;
            let (open, close) = if is_map { ('{', '}') } else { ('[', ']') };
            out.push(open);
            let mut any = false;
            for (i, item) in v.try_iter()?.enumerate() {
                any = true;
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                if is_map {
                    let key = item.as_str().map(String::from).unwrap_or_else(|| item.to_string());
                    out.push_str(&serde_json::Value::String(key).to_string());
                    out.push_str(": ");
                    write_py_json(&v.get_item(&item)?, indent, depth + 1, out)?;
                } else {
                    write_py_json(&item, indent, depth + 1, out)?;
                }
            }
            if any {
                newline(out, depth);
            }
            out.push(close);
        }
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        _ => out.push_str(&serde_json::to_string(v).map_err(json_err)?),
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `strftime` of a UTC time for the directives chat templates use: `%d %m %Y %y %b %B %a %A
/// %H %M %S %j %%`.
fn strftime(fmt: &str, unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] =
        ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_march = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_march + 2) / 153;
    let day = doy_march - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][(month - 1) as usize];
    let yday = before + day + i64::from(leap && month > 2);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let mname = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('b') => out.push_str(&mname[..3]),
            Some('B') => out.push_str(mname),
            Some('a') => out.push_str(&weekday[..3]),
            Some('A') => out.push_str(weekday),
            Some('H') => out.push_str(&format!("{:02}", secs / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs % 60)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_writes_known_dates() {
        // 2024-07-26 12:34:56 UTC was a Friday, day 208 of a leap year.
        let t = 1_721_997_296;
        assert_eq!(strftime("%d %b %Y", t), "26 Jul 2024");
        assert_eq!(strftime("%A %B %j %H:%M:%S %y %m %%", t), "Friday July 208 12:34:56 24 07 %");
        assert_eq!(strftime("%d %m %Y", 0), "01 01 1970");
        assert_eq!(strftime("%d %m %Y", 951_782_400), "29 02 2000");
    }

    #[test]
    fn tojson_writes_what_python_writes() {
        let t = JinjaTemplate::new("", "", "").unwrap();
        let env = &t.env;
        let out = env.render_str(r#"{{ {"z": 1, "a": none} | tojson }}"#, ()).unwrap();
        assert_eq!(out, r#"{"z": 1, "a": null}"#, "keys keep their order");
        let v = serde_json::json!({"a": [1, "é<", 1.5, true], "b": {}});
        let out = env.render_str("{{ x | tojson }}", minijinja::context! { x => v }).unwrap();
        assert_eq!(out, r#"{"a": [1, "é<", 1.5, true], "b": {}}"#);
        let out =
            env.render_str("{{ x | tojson(indent=2) }}", minijinja::context! { x => v }).unwrap();
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1,\n    \"é<\",\n    1.5,\n    true\n  ],\n  \"b\": {}\n}"
        );
    }

    #[test]
    fn raise_exception_is_a_template_error() {
        let t = JinjaTemplate::new("{{ raise_exception('no system role') }}", "", "").unwrap();
        let e = t.render_with(&[], true).unwrap_err().to_string();
        assert!(e.contains("no system role"), "{e}");
    }
}
