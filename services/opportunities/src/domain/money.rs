//! Money as integers: minor units of one currency, never floating point (DESIGN "API
//! conventions"). Every product and quotient goes through `i128` and one rounding rule.

use std::{collections::BTreeMap, fmt};

use crm_platform::values::DEFAULT_CURRENCY;

/// An ISO 4217 alphabetic currency code, validated (three upper-case ASCII letters).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency(String);

impl Currency {
    /// Parses a code; empty means the company's default (RON).
    pub fn parse(raw: &str) -> Result<Self, String> {
        crm_platform::values::currency_code(raw).map(Self)
    }

    /// The default currency (RON).
    pub fn default_currency() -> Self {
        Self(DEFAULT_CURRENCY.to_owned())
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An amount in minor units of a currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Money {
    /// Minor units (bani, cents).
    pub units: i64,
    /// Its currency.
    pub currency: Currency,
}

impl Money {
    /// `units` of `currency`.
    pub fn new(units: i64, currency: Currency) -> Self {
        Self { units, currency }
    }
}

/// `numerator / denominator` rounded half away from zero (2.5 → 3, −2.5 → −3): the one rounding
/// rule of every amount. `denominator` must be positive.
pub fn div_round_half_away(numerator: i128, denominator: i128) -> i128 {
    debug_assert!(denominator > 0);
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    if remainder.abs() * 2 >= denominator {
        quotient + numerator.signum()
    } else {
        quotient
    }
}

/// `value` as `i64`, or an error saying the amount is too large.
pub fn fit(value: i128) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| "the amount is too large".to_owned())
}

/// Sums of amounts kept per currency: the only way amounts of several currencies are added
/// (DESIGN: money is never summed across currencies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerCurrency(BTreeMap<Currency, i128>);

impl PerCurrency {
    /// Nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `units` of `currency`.
    pub fn add(&mut self, currency: &Currency, units: i64) {
        *self.0.entry(currency.clone()).or_default() += i128::from(units);
    }

    /// The sums, the default currency first, then by code; `always_default` puts a zero for
    /// the default currency when it has nothing.
    pub fn totals(&self, always_default: bool) -> Vec<Money> {
        let default = Currency::default_currency();
        let mut out = Vec::new();
        match self.0.get(&default) {
            Some(units) => out.push(Money::new(saturate(*units), default.clone())),
            None if always_default => out.push(Money::new(0, default.clone())),
            None => {}
        }
        out.extend(
            self.0
                .iter()
                .filter(|(c, _)| **c != default)
                .map(|(c, units)| Money::new(saturate(*units), c.clone())),
        );
        out
    }
}

/// Sums of real amounts stay far inside `i64`; a sum that does not is pinned to the bound
/// rather than wrapped.
fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// Formats `units` minor units with two decimals in Romanian style: "1.234,56", "-0,05".
pub fn format_ro(units: i64) -> String {
    let negative = units < 0;
    let abs = units.unsigned_abs();
    let (whole, cents) = (abs / 100, abs % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("{}{grouped},{cents:02}", if negative { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(div_round_half_away(25, 10), 3);
        assert_eq!(div_round_half_away(-25, 10), -3);
        assert_eq!(div_round_half_away(24, 10), 2);
        assert_eq!(div_round_half_away(-24, 10), -2);
        assert_eq!(div_round_half_away(15, 10), 2);
        assert_eq!(div_round_half_away(5, 10), 1);
        assert_eq!(div_round_half_away(4, 10), 0);
        assert_eq!(div_round_half_away(0, 7), 0);
    }

    #[test]
    fn sums_stay_per_currency_with_the_default_first() {
        let mut sums = PerCurrency::new();
        let eur = Currency::parse("EUR").unwrap();
        let ron = Currency::parse("").unwrap();
        sums.add(&eur, 100);
        sums.add(&ron, 250);
        sums.add(&eur, 5);
        assert_eq!(
            sums.totals(true),
            [Money::new(250, ron), Money::new(105, eur.clone())]
        );
        let mut only_eur = PerCurrency::new();
        only_eur.add(&eur, 1);
        assert_eq!(only_eur.totals(false), [Money::new(1, eur.clone())]);
        assert_eq!(only_eur.totals(true).len(), 2);
    }

    #[test]
    fn romanian_formatting() {
        assert_eq!(format_ro(123_456), "1.234,56");
        assert_eq!(format_ro(5), "0,05");
        assert_eq!(format_ro(-100_000_000), "-1.000.000,00");
        assert_eq!(format_ro(99_999), "999,99");
    }
}
