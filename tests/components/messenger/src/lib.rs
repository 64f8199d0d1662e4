//! Sends and receives `wasmcloud:messaging` messages. A received message is answered with
//! `handled <subject>: <body>`, on its reply-to subject if it has one, else on
//! `messenger.out`; a body of `trap` traps and `fail` returns an error.
use exports::trellis::providers::messenger_probe;
use exports::wasmcloud::messaging::handler;
use wasmcloud::messaging::consumer;
use wasmcloud::messaging::types::BrokerMessage;

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/messaging-guest", generate_all });

/// Where answers to messages without a reply-to go.
const OUT: &str = "messenger.out";

struct Messenger;

impl handler::Guest for Messenger {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        match msg.body.as_slice() {
            b"trap" => panic!("asked to trap"),
            b"fail" => return Err("asked to fail".into()),
            _ => {}
        }
        let mut body = format!("handled {}: ", msg.subject).into_bytes();
        body.extend_from_slice(&msg.body);
        consumer::publish(&BrokerMessage {
            subject: msg.reply_to.unwrap_or_else(|| OUT.into()),
            body,
            reply_to: None,
        })
    }
}

impl messenger_probe::Guest for Messenger {
    fn publish(subject: String, body: Vec<u8>, reply_to: Option<String>) -> Result<(), String> {
        consumer::publish(&BrokerMessage {
            subject,
            body,
            reply_to,
        })
    }

    fn request(subject: String, body: Vec<u8>, timeout_ms: u32) -> Result<Vec<u8>, String> {
        consumer::request(&subject, &body, timeout_ms).map(|reply| reply.body)
    }
}

export!(Messenger);
