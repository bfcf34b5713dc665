//! The Web Flow operation text (title, message, `A1*A100CZK*…` data line, flags) as the phone decodes
//! and shows it (`offline_token::operation`): five `\n`-separated lines of arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offline_token::Operation;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(5, '\n');
    let mut next = || lines.next().unwrap_or_default();
    let (id, title, message, operation_data, flags) = (next(), next(), next(), next(), next());
    let operation = Operation::decode(id, title, message, operation_data, flags);
    let _ = operation.to_string();
    let _ = operation.flags.explanations();
    for field in &operation.data.fields {
        let _ = field.label();
        let _ = field.value();
    }
});
