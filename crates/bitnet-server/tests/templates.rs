//! The model's Jinja chat template renders what Hugging Face transformers renders
//! (`tests/fixtures/chat_templates.json`, written by `tools/chat_template_fixture.py`).

use bitnet_infer::chat::Message;
use bitnet_server::template::JinjaTemplate;
use serde_json::Value;

#[test]
fn templates_render_as_transformers_renders_them() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat_templates.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for t in fixture.as_array().unwrap() {
        let s = |k: &str| t[k].as_str().unwrap();
        let template = JinjaTemplate::new(s("template"), s("bos_token"), s("eos_token")).unwrap();
        for case in t["cases"].as_array().unwrap() {
            let messages: Vec<Message> = case["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
                .collect();
            let agp = case["add_generation_prompt"].as_bool().unwrap();
            let got = template.render_with(&messages, agp);
            match (&case["expected"], &case["error"]) {
                (Value::String(want), _) => {
                    assert_eq!(&got.unwrap(), want, "{} {case}", s("name"))
                }
                (_, Value::String(err)) => {
                    let e = got.expect_err("transformers raised").to_string();
                    assert!(e.contains(err.as_str()), "{}: {e:?} lacks {err:?}", s("name"));
                }
                _ => panic!("a case needs `expected` or `error`"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}
