//! The Web Flow operation a QR code describes (`spec/powerauth-offline.md` §5), decoded for display.
//!
//! A Web Flow `DATA` has five lines: operation id, title, message, operation data, flags. This module
//! turns them into an [`Operation`]: title and message with their escapes resolved, the operation data
//! split into typed [`Field`]s (amount `A`, account `I`/`Q`, date `D`, reference `R`, note `N`, free
//! text `T`, any other letter as text), and the [`Flags`] explained. Decoding never fails: whatever does
//! not follow the grammar is shown as text, because the ECDSA signature (checked before this runs) is
//! what makes the content trustworthy, not its shape.
//!
//! Escapes inside text (§5): `\n` is a line break, `\\` a backslash, `\*` a literal asterisk. An
//! unescaped `*` separates fields. Any other backslash sequence is kept as written.

use std::fmt;

use crate::crypto::offline_data::WebFlowFields;

/// One decoded Web Flow operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Line 0: the operation id, as written.
    pub id: String,
    /// Line 1, escapes resolved.
    pub title: String,
    /// Line 2, escapes resolved.
    pub message: String,
    /// Line 3, decoded.
    pub data: OperationData,
    /// Line 4, decoded.
    pub flags: Flags,
}

impl Operation {
    /// Decodes the five Web Flow lines.
    pub fn decode(id: &str, title: &str, message: &str, data: &str, flags: &str) -> Self {
        Self {
            id: id.to_owned(),
            title: unescape(title),
            message: unescape(message),
            data: OperationData::decode(data),
            flags: Flags::decode(flags),
        }
    }

    /// Decodes the five lines of a parsed Web Flow payload.
    pub fn from_web_flow(fields: &WebFlowFields<'_>) -> Self {
        Self::decode(
            fields.operation_id,
            fields.title,
            fields.message,
            fields.operation_data,
            fields.flags,
        )
    }
}

impl fmt::Display for Operation {
    /// A multi-line, human-readable description of the operation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Operation {}", self.id)?;
        if !self.title.is_empty() {
            writeln!(f, "  {}", indent(&self.title))?;
        }
        if !self.message.is_empty() {
            writeln!(f, "  {}", indent(&self.message))?;
        }
        write!(f, "{}", self.data)?;
        write!(f, "{}", self.flags)
    }
}

/// Line 3: `HEADER *( "*" FIELD )`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationData {
    /// The header, when it is one capital letter followed by a number 0..=99.
    pub header: Option<Header>,
    /// The raw header text when it does not follow the grammar (shown as is).
    pub raw_header: String,
    /// The fields after the header, in order.
    pub fields: Vec<Field>,
}

/// `VERSION TEMPLATE`, e.g. `A1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `'A'` = version 1.
    pub version: char,
    /// 0 generic, 1 payment, 2 login; others are shown as numbers.
    pub template: u8,
}

impl Header {
    /// The template's name, e.g. "payment".
    pub fn template_name(self) -> &'static str {
        match self.template {
            0 => "generic",
            1 => "payment",
            2 => "login",
            _ => "unknown template",
        }
    }
}

/// One operation-data field, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// An empty (omitted optional) field.
    Empty,
    /// `A` amount: the decimal number and the 3-letter currency, e.g. `100` and `CZK`.
    Amount {
        /// The decimal amount as written.
        amount: String,
        /// The ISO 4217 currency code.
        currency: String,
    },
    /// `I` account: IBAN and optional BIC.
    Iban {
        /// The IBAN.
        iban: String,
        /// The BIC, after a comma.
        bic: Option<String>,
    },
    /// `Q` account in any format.
    Account(String),
    /// `D` date: `YYYY-MM-DD` when the field is `YYYYMMDD`, otherwise the text as written.
    Date(String),
    /// `R` reference.
    Reference(String),
    /// `N` note.
    Note(String),
    /// `T` free text.
    Text(String),
    /// Any other type letter (forward compatible): the letter and the text after it.
    Unknown {
        /// The type letter (or the first character of a field that has no letter).
        letter: char,
        /// The rest of the field, escapes resolved.
        text: String,
    },
}

impl Field {
    /// Decodes one raw field (escapes still in place).
    pub fn decode(raw: &str) -> Self {
        let mut chars = raw.chars();
        let Some(letter) = chars.next() else {
            return Self::Empty;
        };
        let rest = chars.as_str();
        let text = unescape(rest);
        match letter {
            'A' => match split_amount(&text) {
                Some((amount, currency)) => Self::Amount { amount, currency },
                None => Self::Unknown { letter, text },
            },
            'I' => match text.split_once(',') {
                Some((iban, bic)) => Self::Iban {
                    iban: iban.to_owned(),
                    bic: Some(bic.to_owned()),
                },
                None => Self::Iban {
                    iban: text,
                    bic: None,
                },
            },
            'Q' => Self::Account(text),
            'D' => Self::Date(iso_date(&text).unwrap_or(text)),
            'R' => Self::Reference(text),
            'N' => Self::Note(text),
            'T' => Self::Text(text),
            _ => Self::Unknown { letter, text },
        }
    }

    /// The label shown before the value, e.g. "Amount".
    pub fn label(&self) -> String {
        match self {
            Self::Empty => "(empty)".to_owned(),
            Self::Amount { .. } => "Amount".to_owned(),
            Self::Iban { .. } | Self::Account(_) => "Account".to_owned(),
            Self::Date(_) => "Date".to_owned(),
            Self::Reference(_) => "Reference".to_owned(),
            Self::Note(_) => "Note".to_owned(),
            Self::Text(_) => "Text".to_owned(),
            Self::Unknown { letter, .. } => format!("Field {letter}"),
        }
    }

    /// The value as shown to the user.
    pub fn value(&self) -> String {
        match self {
            Self::Empty => String::new(),
            Self::Amount { amount, currency } => format!("{amount} {currency}"),
            Self::Iban {
                iban,
                bic: Some(bic),
            } => format!("{iban} (BIC {bic})"),
            Self::Iban { iban, bic: None } => iban.clone(),
            Self::Account(t)
            | Self::Date(t)
            | Self::Reference(t)
            | Self::Note(t)
            | Self::Text(t)
            | Self::Unknown { text: t, .. } => t.clone(),
        }
    }
}

impl OperationData {
    /// Decodes line 3: splits on unescaped `*`, reads the header, decodes each field.
    pub fn decode(line: &str) -> Self {
        let mut raw = split_fields(line).into_iter();
        let raw_header = raw.next().unwrap_or_default();
        Self {
            header: parse_header(&raw_header),
            raw_header,
            fields: raw.map(|f| Field::decode(&f)).collect(),
        }
    }
}

impl fmt::Display for OperationData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.header {
            Some(h) => writeln!(
                f,
                "  Template: {} ({}{}, version {})",
                h.template_name(),
                h.version,
                h.template,
                u32::from(h.version) - u32::from('A') + 1
            )?,
            None => writeln!(f, "  Data: {}", self.raw_header)?,
        }
        for field in &self.fields {
            if *field != Field::Empty {
                writeln!(f, "  {:<10} {}", format!("{}:", field.label()), {
                    indent(&field.value())
                })?;
            }
        }
        Ok(())
    }
}

/// Line 4: the flag letters, order irrelevant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `B`: the operation may be approved with biometry.
    pub biometry: bool,
    /// `X`: the app swaps the approve and reject buttons.
    pub flip_buttons: bool,
    /// `F`: the bank suspects fraud; the app shows a warning.
    pub fraud_warning: bool,
    /// `C`: the app blocks approval while a phone call is active.
    pub block_when_on_call: bool,
    /// Letters this version does not know, in order.
    pub unknown: Vec<char>,
}

impl Flags {
    /// Decodes the flag line.
    pub fn decode(line: &str) -> Self {
        let mut flags = Self::default();
        for c in line.chars() {
            match c {
                'B' => flags.biometry = true,
                'X' => flags.flip_buttons = true,
                'F' => flags.fraud_warning = true,
                'C' => flags.block_when_on_call = true,
                other => flags.unknown.push(other),
            }
        }
        flags
    }

    /// One sentence per set flag.
    pub fn explanations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.biometry {
            out.push("B: may be approved with biometry".to_owned());
        }
        if self.flip_buttons {
            out.push("X: approve and reject buttons are swapped".to_owned());
        }
        if self.fraud_warning {
            out.push("F: WARNING, the bank suspects this operation is fraud".to_owned());
        }
        if self.block_when_on_call {
            out.push("C: must not be approved during a phone call".to_owned());
        }
        for c in &self.unknown {
            out.push(format!("{c}: unknown flag"));
        }
        out
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.explanations() {
            writeln!(f, "  Flag       {line}")?;
        }
        Ok(())
    }
}

/// Resolves `\n` → LF, `\\` → `\`, `\*` → `*`; other backslash sequences stay as written.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('*') => out.push('*'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Splits on `*` that is not escaped; the parts keep their escapes.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let current = fields.last_mut().expect("fields starts non-empty");
        match c {
            '\\' => {
                current.push('\\');
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '*' => fields.push(String::new()),
            other => current.push(other),
        }
    }
    fields
}

fn parse_header(raw: &str) -> Option<Header> {
    let mut chars = raw.chars();
    let version = chars.next().filter(char::is_ascii_uppercase)?;
    let number = chars.as_str();
    if number.is_empty() || number.len() > 2 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Header {
        version,
        template: number.parse().ok()?,
    })
}

/// `100CZK` → (`100`, `CZK`); the amount must be digits with at most one `.`, the currency 3 letters.
fn split_amount(text: &str) -> Option<(String, String)> {
    let split = text.len().checked_sub(3)?;
    if !text.is_char_boundary(split) {
        return None;
    }
    let (amount, currency) = text.split_at(split);
    let amount_ok = !amount.is_empty()
        && amount.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && amount.bytes().filter(|b| *b == b'.').count() <= 1
        && amount.bytes().any(|b| b.is_ascii_digit());
    let currency_ok = currency.bytes().all(|b| b.is_ascii_uppercase());
    (amount_ok && currency_ok).then(|| (amount.to_owned(), currency.to_owned()))
}

/// `YYYYMMDD` → `YYYY-MM-DD` when it is eight digits with a plausible month and day.
fn iso_date(text: &str) -> Option<String> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month: u8 = text[4..6].parse().ok()?;
    let day: u8 = text[6..8].parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day))
        .then(|| format!("{}-{}-{}", &text[0..4], &text[4..6], &text[6..8]))
}

/// Indents continuation lines of a multi-line value so that they line up under the first.
fn indent(text: &str) -> String {
    text.replace('\n', "\n    ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_worked_example() {
        let op = Operation::decode(
            "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6",
            "Payment",
            "Please confirm this payment",
            "A1*A100CZK*ICZ2730300000001165254011*D20180425",
            "B",
        );
        assert_eq!(
            op.data.header,
            Some(Header {
                version: 'A',
                template: 1
            })
        );
        assert_eq!(
            op.data.fields,
            vec![
                Field::Amount {
                    amount: "100".into(),
                    currency: "CZK".into()
                },
                Field::Iban {
                    iban: "CZ2730300000001165254011".into(),
                    bic: None
                },
                Field::Date("2018-04-25".into()),
            ]
        );
        assert!(op.flags.biometry);
        let shown = op.to_string();
        assert!(shown.contains("Amount:    100 CZK"), "{shown}");
        assert!(shown.contains("2018-04-25"), "{shown}");
        assert!(shown.contains("template: payment") || shown.contains("Template: payment"));
    }

    #[test]
    fn every_field_type() {
        let data = OperationData::decode(
            "A1*A1492.50EUR*ICZ2730300000001165254011,RZBCCZPP*QAccount 123/0300*D20241231*RRef 7*NNote\\nline*TFree \\* text*ZUnknown**",
        );
        assert_eq!(
            data.fields,
            vec![
                Field::Amount {
                    amount: "1492.50".into(),
                    currency: "EUR".into()
                },
                Field::Iban {
                    iban: "CZ2730300000001165254011".into(),
                    bic: Some("RZBCCZPP".into())
                },
                Field::Account("Account 123/0300".into()),
                Field::Date("2024-12-31".into()),
                Field::Reference("Ref 7".into()),
                Field::Note("Note\nline".into()),
                Field::Text("Free * text".into()),
                Field::Unknown {
                    letter: 'Z',
                    text: "Unknown".into()
                },
                Field::Empty,
                Field::Empty,
            ]
        );
    }

    #[test]
    fn malformed_fields_are_text() {
        let data = OperationData::decode("hello*Aabc*D2024*A100");
        assert_eq!(data.header, None);
        assert_eq!(data.raw_header, "hello");
        assert_eq!(
            data.fields,
            vec![
                Field::Unknown {
                    letter: 'A',
                    text: "abc".into()
                },
                Field::Date("2024".into()),
                Field::Unknown {
                    letter: 'A',
                    text: "100".into()
                },
            ]
        );
        assert_eq!(OperationData::decode("A123").header, None);
        assert_eq!(OperationData::decode("a1").header, None);
        assert_eq!(
            Field::decode("D20241332"),
            Field::Date("20241332".into()),
            "month 13 is not a date"
        );
        assert_eq!(
            Field::decode("A100Kč"),
            Field::Unknown {
                letter: 'A',
                text: "100Kč".into()
            }
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"a\nb"), "a\nb");
        assert_eq!(unescape(r"a\\b"), r"a\b");
        assert_eq!(unescape(r"a\*b"), "a*b");
        assert_eq!(unescape(r"a\\nb"), r"a\nb", "escaped backslash then n");
        assert_eq!(unescape(r"a\xb"), r"a\xb", "unknown escape kept");
        assert_eq!(unescape("trailing\\"), "trailing\\");
        assert_eq!(
            split_fields(r"A1*TA\*B*N\\*Rx"),
            vec!["A1", r"TA\*B", r"N\\", "Rx"],
            "an escaped backslash does not escape the following *"
        );
        let op = Operation::decode("id", r"Pay\nnow", r"C:\\dir", "A0", "");
        assert_eq!(op.title, "Pay\nnow");
        assert_eq!(op.message, r"C:\dir");
    }

    #[test]
    fn flags() {
        let flags = Flags::decode("XBFCq");
        assert!(flags.biometry && flags.flip_buttons && flags.fraud_warning);
        assert!(flags.block_when_on_call);
        assert_eq!(flags.unknown, vec!['q']);
        assert_eq!(flags.explanations().len(), 5);
        assert_eq!(Flags::decode(""), Flags::default());
        assert!(!Flags::decode("X").biometry);
    }
}
