//! Stages of an opportunity and the rules for moving between them (O2, O3).
//!
//! The stage set is the seed's: New (potential zero) → 1 Presentation (low) → 2 Offer
//! (medium) → 3 Negotiation (high) → 4 Sale (very high), and X Lost from any open stage. Names,
//! the stage → level mapping and the level probabilities are configurable ([`StageConfig`]);
//! the sequence itself is not, because the rules below (and the documents each stage allows)
//! are written against it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A stage of the sales sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// "0": just recorded.
    New,
    /// "1": a meeting with the customer.
    Presentation,
    /// "2": an offer can be issued.
    Offer,
    /// "3": an order or contract is drafted.
    Negotiation,
    /// "4": contract signed or invoice issued; won.
    Sale,
    /// "X": lost, with a reason.
    Lost,
}

impl Stage {
    /// Every stage, in sequence order.
    pub const ALL: [Stage; 6] = [
        Stage::New,
        Stage::Presentation,
        Stage::Offer,
        Stage::Negotiation,
        Stage::Sale,
        Stage::Lost,
    ];

    /// The seed's code of the stage.
    pub fn seed_code(self) -> &'static str {
        match self {
            Stage::New => "0",
            Stage::Presentation => "1",
            Stage::Offer => "2",
            Stage::Negotiation => "3",
            Stage::Sale => "4",
            Stage::Lost => "X",
        }
    }

    /// Position in the sequence, 0 (New) … 5 (Lost).
    pub fn position(self) -> i32 {
        match self {
            Stage::New => 0,
            Stage::Presentation => 1,
            Stage::Offer => 2,
            Stage::Negotiation => 3,
            Stage::Sale => 4,
            Stage::Lost => 5,
        }
    }

    /// Whether the opportunity is still being worked on.
    pub fn is_open(self) -> bool {
        !matches!(self, Stage::Sale | Stage::Lost)
    }

    /// The name in the database.
    pub fn as_db(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Presentation => "presentation",
            Stage::Offer => "offer",
            Stage::Negotiation => "negotiation",
            Stage::Sale => "sale",
            Stage::Lost => "lost",
        }
    }

    /// The stage of a database name.
    pub fn from_db(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_db() == name)
    }

    /// The seed's name of the stage (the company's language).
    pub fn default_name(self) -> &'static str {
        match self {
            Stage::New => "0 Nou",
            Stage::Presentation => "1 Prezentare",
            Stage::Offer => "2 Ofertă",
            Stage::Negotiation => "3 Negociere",
            Stage::Sale => "4 Vânzare",
            Stage::Lost => "X Pierdut",
        }
    }

    /// The seed's potential level of the stage.
    pub fn default_level(self) -> Level {
        match self {
            Stage::New | Stage::Lost => Level::Zero,
            Stage::Presentation => Level::Low,
            Stage::Offer => Level::Medium,
            Stage::Negotiation => Level::High,
            Stage::Sale => Level::VeryHigh,
        }
    }
}

/// A sales-potential level (O3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Zero.
    Zero,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Very high.
    VeryHigh,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 5] = [
        Level::Zero,
        Level::Low,
        Level::Medium,
        Level::High,
        Level::VeryHigh,
    ];

    /// The seed's default probability of the level, in percent.
    pub fn default_probability(self) -> i32 {
        match self {
            Level::Zero => 0,
            Level::Low => 10,
            Level::Medium => 30,
            Level::High => 60,
            Level::VeryHigh => 100,
        }
    }
}

/// The configurable part of the stage set: names, levels, level probabilities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageConfig {
    /// Display name of each stage.
    pub names: BTreeMap<Stage, String>,
    /// Potential level of each stage.
    pub levels: BTreeMap<Stage, Level>,
    /// Default probability of each level, 0..=100.
    pub probabilities: BTreeMap<Level, i32>,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            names: Stage::ALL
                .into_iter()
                .map(|s| (s, s.default_name().to_owned()))
                .collect(),
            levels: Stage::ALL
                .into_iter()
                .map(|s| (s, s.default_level()))
                .collect(),
            probabilities: Level::ALL
                .into_iter()
                .map(|l| (l, l.default_probability()))
                .collect(),
        }
    }
}

impl StageConfig {
    /// The name of `stage`.
    pub fn name(&self, stage: Stage) -> &str {
        self.names
            .get(&stage)
            .map_or_else(|| stage.default_name(), String::as_str)
    }

    /// The level of `stage`.
    pub fn level(&self, stage: Stage) -> Level {
        self.levels
            .get(&stage)
            .copied()
            .unwrap_or_else(|| stage.default_level())
    }

    /// The default probability of an opportunity in `stage`: its level's.
    pub fn probability(&self, stage: Stage) -> i32 {
        let level = self.level(stage);
        self.probabilities
            .get(&level)
            .copied()
            .unwrap_or_else(|| level.default_probability())
    }

    /// Checks a configuration: every stage named (1..=100 characters) and levelled, every level
    /// with a probability in 0..=100. Reasons name the proto field.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            match self.names.get(&stage).map(|n| n.trim().chars().count()) {
                Some(1..=100) => {}
                _ => bad.push((
                    format!("config.stages[{i}].name"),
                    "must be 1 to 100 characters".into(),
                )),
            }
            if !self.levels.contains_key(&stage) {
                bad.push((
                    format!("config.stages[{i}].potential_level"),
                    "is required".into(),
                ));
            }
        }
        for (i, level) in Level::ALL.into_iter().enumerate() {
            if !self
                .probabilities
                .get(&level)
                .is_some_and(|p| (0..=100).contains(p))
            {
                bad.push((
                    format!("config.level_probabilities[{i}].probability_percent"),
                    "must be between 0 and 100".into(),
                ));
            }
        }
        bad
    }
}

/// Why a stage change is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StageRuleError {
    /// Won and lost opportunities change only through a reopen.
    #[error("the opportunity is closed ({0:?}): reopen it first (ReopenOpportunity)")]
    Closed(Stage),
    /// LOST has its own call, which takes the reason.
    #[error("use MarkOpportunityLost to mark an opportunity lost: it takes the lost reason")]
    UseMarkLost,
    /// Moving to the stage it is in records nothing, unless a follow-up is planned.
    #[error("the opportunity is already in this stage; give a follow-up to record one")]
    SameStage,
    /// SALE is reached through a signed contract or an issued invoice.
    #[error(
        "SALE is reached when a contract linked to the opportunity is signed or an invoice is \
         issued; there is none yet"
    )]
    SaleNeedsDocument,
    /// Only won or lost opportunities are reopened.
    #[error("the opportunity is open: only won or lost opportunities are reopened")]
    NotClosed,
    /// Reopening goes into an open stage.
    #[error("an opportunity is reopened into an open stage (NEW to NEGOTIATION)")]
    ReopenIntoClosed,
}

/// Checks a hand-made change from `current` to `target` (ChangeOpportunityStage): forward and
/// back among open stages are allowed, SALE only with a linked signed contract or issued
/// invoice (`has_sale_document`).
pub fn check_change(
    current: Stage,
    target: Stage,
    has_follow_up: bool,
    has_sale_document: bool,
) -> Result<(), StageRuleError> {
    if !current.is_open() {
        return Err(StageRuleError::Closed(current));
    }
    if target == Stage::Lost {
        return Err(StageRuleError::UseMarkLost);
    }
    if target == current && !has_follow_up {
        return Err(StageRuleError::SameStage);
    }
    if target == Stage::Sale && !has_sale_document {
        return Err(StageRuleError::SaleNeedsDocument);
    }
    Ok(())
}

/// Checks marking an opportunity in `current` lost.
pub fn check_lost(current: Stage) -> Result<(), StageRuleError> {
    if current.is_open() {
        Ok(())
    } else {
        Err(StageRuleError::Closed(current))
    }
}

/// The stage a won or lost opportunity reopens into: `target` when given, else `last_open`,
/// the last open stage it was in.
pub fn reopen_stage(
    current: Stage,
    target: Option<Stage>,
    last_open: Stage,
) -> Result<Stage, StageRuleError> {
    if current.is_open() {
        return Err(StageRuleError::NotClosed);
    }
    let stage = target.unwrap_or(last_open);
    if stage.is_open() {
        Ok(stage)
    } else {
        Err(StageRuleError::ReopenIntoClosed)
    }
}

/// Whether a signed contract or an issued invoice moves an opportunity in `current` to SALE:
/// only an open one (a lost opportunity stays lost until reopened; a won one is won).
pub fn document_wins(current: Stage) -> bool {
    current.is_open()
}

/// `potential` × `probability_percent` / 100, rounded half away from zero.
pub fn weighted_value(potential: i64, probability_percent: i32) -> i64 {
    i64::try_from(super::money::div_round_half_away(
        i128::from(potential) * i128::from(probability_percent),
        100,
    ))
    .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_codes_and_levels_are_the_seeds() {
        let codes: Vec<&str> = Stage::ALL.iter().map(|s| s.seed_code()).collect();
        assert_eq!(codes, ["0", "1", "2", "3", "4", "X"]);
        let config = StageConfig::default();
        let probabilities: Vec<i32> = Stage::ALL.iter().map(|s| config.probability(*s)).collect();
        assert_eq!(probabilities, [0, 10, 30, 60, 100, 0]);
        assert_eq!(config.name(Stage::Offer), "2 Ofertă");
        assert!(config.check().is_empty());
    }

    #[test]
    fn open_stages_move_forward_and_back() {
        assert_eq!(
            check_change(Stage::New, Stage::Negotiation, false, false),
            Ok(())
        );
        assert_eq!(
            check_change(Stage::Negotiation, Stage::Presentation, false, false),
            Ok(())
        );
        assert_eq!(
            check_change(Stage::Offer, Stage::Offer, false, false),
            Err(StageRuleError::SameStage)
        );
        assert_eq!(
            check_change(Stage::Offer, Stage::Offer, true, false),
            Ok(())
        );
    }

    #[test]
    fn sale_needs_a_document_and_lost_its_own_call() {
        assert_eq!(
            check_change(Stage::Negotiation, Stage::Sale, false, false),
            Err(StageRuleError::SaleNeedsDocument)
        );
        assert_eq!(
            check_change(Stage::Negotiation, Stage::Sale, false, true),
            Ok(())
        );
        assert_eq!(
            check_change(Stage::Offer, Stage::Lost, false, true),
            Err(StageRuleError::UseMarkLost)
        );
    }

    #[test]
    fn closed_opportunities_change_only_by_reopening() {
        for closed in [Stage::Sale, Stage::Lost] {
            assert_eq!(
                check_change(closed, Stage::Offer, true, true),
                Err(StageRuleError::Closed(closed))
            );
            assert_eq!(check_lost(closed), Err(StageRuleError::Closed(closed)));
            assert!(!document_wins(closed));
        }
        assert_eq!(
            reopen_stage(Stage::Lost, None, Stage::Offer),
            Ok(Stage::Offer)
        );
        assert_eq!(
            reopen_stage(Stage::Sale, Some(Stage::Negotiation), Stage::Offer),
            Ok(Stage::Negotiation)
        );
        assert_eq!(
            reopen_stage(Stage::Lost, Some(Stage::Sale), Stage::Offer),
            Err(StageRuleError::ReopenIntoClosed)
        );
        assert_eq!(
            reopen_stage(Stage::Offer, None, Stage::Offer),
            Err(StageRuleError::NotClosed)
        );
    }

    #[test]
    fn weighted_values_round_half_away() {
        assert_eq!(weighted_value(1_000_050, 30), 300_015);
        assert_eq!(weighted_value(5, 10), 1);
        assert_eq!(weighted_value(4, 10), 0);
        assert_eq!(weighted_value(123, 100), 123);
    }
}
