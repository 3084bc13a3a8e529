//! Small validated values. Their constructors refuse bad input with a reason in words; the field
//! name is added by whoever parses the request, so a value that exists is valid.

pub use crm_platform::values::{
    DEFAULT_CURRENCY, Email, currency_code, optional_uuid, phone, text, uuid,
};

/// A fiscal code (Romanian CUI/CIF) kept without the `RO` prefix: 2..10 digits whose last digit
/// is the control digit of the 753217532 key; for a partner outside Romania, any VAT id of 2..14
/// upper-case letters and digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiscalCode(String);

impl FiscalCode {
    /// Parses a fiscal code for a partner in `country` (ISO alpha-2).
    pub fn parse(raw: &str, country: &str) -> Result<Self, String> {
        let compact: String = raw
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if country != "RO" {
            let ok = (2..=14).contains(&compact.len())
                && compact.chars().all(|c| c.is_ascii_alphanumeric());
            return if ok {
                Ok(Self(compact))
            } else {
                Err(format!(
                    "{raw:?} is not a valid VAT id (2 to 14 letters and digits)"
                ))
            };
        }
        let digits = compact.strip_prefix("RO").unwrap_or(&compact);
        if !(2..=10).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "{raw:?} is not a Romanian fiscal code (optional RO, then 2 to 10 digits)"
            ));
        }
        if !romanian_control_digit_ok(digits) {
            return Err(format!("{raw:?} has a wrong control digit"));
        }
        Ok(Self(digits.to_owned()))
    }

    /// The code without prefix, as stored and compared.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The CUI control digit: the digits before the last, right-aligned against the key 753217532,
/// multiplied pairwise and summed; times 10, modulo 11 (10 becomes 0).
fn romanian_control_digit_ok(digits: &str) -> bool {
    const KEY: [u32; 9] = [7, 5, 3, 2, 1, 7, 5, 3, 2];
    let values: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    let (body, control) = values.split_at(values.len() - 1);
    let offset = KEY.len() - body.len();
    let sum: u32 = body.iter().zip(&KEY[offset..]).map(|(d, k)| d * k).sum();
    (sum * 10 % 11) % 10 == control[0]
}

/// The fiscal code as a filter value: the `RO` prefix and spaces ignored.
pub fn normalize_fiscal_code(raw: &str) -> String {
    let compact: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    compact
        .strip_prefix("RO")
        .filter(|rest| rest.chars().all(|c| c.is_ascii_digit()))
        .map_or(compact.clone(), str::to_owned)
}

/// An ISO 3166-1 alpha-2 country code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountryCode(String);

impl CountryCode {
    /// Parses two letters (upper-cased); empty means `default`.
    pub fn parse_or(raw: &str, default: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self(default.to_owned()));
        }
        if raw.len() == 2 && raw.chars().all(|c| c.is_ascii_alphabetic()) {
            Ok(Self(raw.to_ascii_uppercase()))
        } else {
            Err(format!("{raw:?} is not an ISO 3166-1 alpha-2 country code"))
        }
    }

    /// The two upper-case letters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An amount of money not below zero, in minor units of an ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonNegativeMoney {
    /// Minor units.
    pub units: i64,
    /// ISO 4217 code.
    pub currency: String,
}

impl NonNegativeMoney {
    /// Parses minor units and a currency code (empty = RON).
    pub fn parse(units: i64, currency: &str) -> Result<Self, String> {
        if units < 0 {
            return Err("must not be negative".into());
        }
        Ok(Self {
            units,
            currency: currency_code(currency)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(Email::parse("Ana.Pop@Agroserv.ro").is_ok());
        assert!(Email::parse(" office@a-b.example.com ").is_ok());
        for bad in [
            "",
            "ana",
            "ana@",
            "@x.ro",
            "ana@x",
            "ana@@x.ro",
            "a..b@x.ro",
            "ana@x_y.ro",
            "ana pop@x.ro",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn romanian_fiscal_codes_check_their_control_digit() {
        // Known valid CUIs.
        for good in ["RO18547290", "18547290", "RO 14399840", "14837428"] {
            assert!(FiscalCode::parse(good, "RO").is_ok(), "{good}");
        }
        assert_eq!(
            FiscalCode::parse("ro18547290", "RO").unwrap().as_str(),
            "18547290"
        );
        for bad in ["18547291", "RO", "12345678901", "RO12A4", "1"] {
            assert!(FiscalCode::parse(bad, "RO").is_err(), "{bad}");
        }
        assert!(FiscalCode::parse("DE123456789", "DE").is_ok());
        assert!(FiscalCode::parse("DE-12", "DE").is_err());
    }

    #[test]
    fn other_values() {
        assert!(NonNegativeMoney::parse(-1, "RON").is_err());
        assert_eq!(NonNegativeMoney::parse(5, "").unwrap().currency, "RON");
        assert!(NonNegativeMoney::parse(5, "ron").is_err());
        assert!(phone("+40 (21) 123-4567").is_ok());
        assert!(phone("call me").is_err());
        assert_eq!(CountryCode::parse_or("", "RO").unwrap().as_str(), "RO");
        assert_eq!(CountryCode::parse_or("de", "RO").unwrap().as_str(), "DE");
        assert!(CountryCode::parse_or("DEU", "RO").is_err());
        assert_eq!(text("  x ", 5, true).unwrap(), "x");
        assert!(text("   ", 5, true).is_err());
        assert_eq!(normalize_fiscal_code("ro 18547290"), "18547290");
    }
}
