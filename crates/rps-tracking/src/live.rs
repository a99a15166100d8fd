//! The live set — the versions served side by side — and retention.
//!
//! Three aliases name the live set:
//! - `champion` ([`CHAMPION`]): the current best, the version `rps-serve` answers by default.
//! - `challenger` ([`CHALLENGER`]): the most recent runner-up. When evaluate keeps a new version
//!   out, that version becomes the challenger; when it promotes a new version, the champion it
//!   replaces becomes the challenger. So the challenger is always the latest version that lost
//!   a champion/challenger decision (or the champion just dethroned), never the champion itself.
//! - `baseline` ([`BASELINE`]): a fixed reference — the first champion the registry ever had. It
//!   is set once, when a promotion finds no baseline, and only an operator moves it afterwards
//!   (`Registry::set_alias`).
//!
//! Retention ([`retain`]) keeps the newest `keep` active versions plus every version an alias
//! points at (whatever alias, not only the live three); the others are archived
//! ([`Registry::archive`]): nothing is deleted.

use crate::{Registry, TrackingError};
use std::collections::{BTreeMap, BTreeSet};

pub const CHAMPION: &str = "champion";
pub const CHALLENGER: &str = "challenger";
pub const BASELINE: &str = "baseline";
/// The live aliases, in the order they are listed and served.
pub const LIVE_ALIASES: [&str; 3] = [CHAMPION, CHALLENGER, BASELINE];

/// Move the live aliases after evaluate judged `version` (`promoted`: it beat the champion).
/// Returns the live set afterwards (alias → version, only the aliases that exist).
pub fn record_evaluation(
    registry: &dyn Registry,
    name: &str,
    version: u32,
    promoted: bool,
) -> Result<BTreeMap<String, u32>, TrackingError> {
    let champion = registry.alias(name, CHAMPION)?;
    let mut moves: Vec<(&str, u32)> = Vec::new();
    if promoted && champion != Some(version) {
        moves.push((CHAMPION, version));
        if let Some(old) = champion {
            moves.push((CHALLENGER, old));
        }
        if registry.alias(name, BASELINE)?.is_none() {
            // The first champion ever (or, in a registry from before the live set, the champion
            // that was serving when the first promotion happened).
            moves.push((BASELINE, champion.unwrap_or(version)));
        }
    } else if !promoted && champion != Some(version) {
        moves.push((CHALLENGER, version));
    }
    // One step: a killed evaluate leaves the old live set or the new one, never half of it.
    registry.set_aliases(name, &moves)?;
    live_set(registry, name)
}

/// The live aliases that exist and the versions they point at.
pub fn live_set(
    registry: &dyn Registry,
    name: &str,
) -> Result<BTreeMap<String, u32>, TrackingError> {
    let all = registry.aliases(name)?;
    Ok(LIVE_ALIASES
        .iter()
        .filter_map(|a| all.get(*a).map(|v| ((*a).to_owned(), *v)))
        .collect())
}

/// The active versions retention would archive: all but the newest `keep` and the aliased ones.
/// `keep == 0` keeps everything.
pub fn to_archive(versions: &[u32], aliased: &BTreeSet<u32>, keep: usize) -> Vec<u32> {
    if keep == 0 {
        return Vec::new();
    }
    let mut sorted = versions.to_vec();
    sorted.sort_unstable();
    let old = sorted.len().saturating_sub(keep);
    sorted
        .into_iter()
        .take(old)
        .filter(|v| !aliased.contains(v))
        .collect()
}

/// Archive every active version of `name` except the newest `keep` and those an alias points
/// at; returns the versions archived now.
pub fn retain(registry: &dyn Registry, name: &str, keep: usize) -> Result<Vec<u32>, TrackingError> {
    let aliased: BTreeSet<u32> = registry.aliases(name)?.into_values().collect();
    let archive = to_archive(&registry.versions(name)?, &aliased, keep);
    for v in &archive {
        registry.archive(name, *v)?;
        tracing::info!(model = name, version = v, keep, "archived model version");
    }
    Ok(archive)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{LocalRegistry, VersionInfo};

    const NAME: &str = "m";

    /// A registry with versions 1..=n written directly (version.json and one model file).
    fn registry(n: u32) -> (tempfile::TempDir, LocalRegistry) {
        let dir = tempfile::tempdir().unwrap();
        let store = rps_store::open(dir.path().to_str().unwrap()).unwrap();
        for v in 1..=n {
            add(store.as_ref(), v);
        }
        (dir, LocalRegistry::new(store))
    }

    fn add(store: &dyn rps_store::ObjectStore, v: u32) {
        let info = VersionInfo {
            name: NAME.to_owned(),
            version: v,
            created_at: String::new(),
            run_id: format!("run{v}"),
            data_hash: String::new(),
            git_commit: String::new(),
            metrics: BTreeMap::new(),
        };
        store
            .put(&format!("{NAME}/versions/{v}/model.ubj"), b"x")
            .unwrap();
        store
            .put(
                &format!("{NAME}/versions/{v}/version.json"),
                &serde_json::to_vec(&info).unwrap(),
            )
            .unwrap();
    }

    fn set(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(a, v)| ((*a).to_owned(), *v)).collect()
    }

    #[test]
    fn a_promotion_sequence_moves_the_live_aliases_as_documented() {
        let (_d, r) = registry(5);
        // v1: the first model is promoted: champion and baseline, no challenger yet.
        assert_eq!(
            record_evaluation(&r, NAME, 1, true).unwrap(),
            set(&[("champion", 1), ("baseline", 1)])
        );
        // Evaluating the champion again changes nothing.
        assert_eq!(
            record_evaluation(&r, NAME, 1, false).unwrap(),
            set(&[("champion", 1), ("baseline", 1)])
        );
        // v2 loses: it is the challenger.
        assert_eq!(
            record_evaluation(&r, NAME, 2, false).unwrap(),
            set(&[("champion", 1), ("challenger", 2), ("baseline", 1)])
        );
        // v3 wins: champion; the dethroned v1 becomes the challenger; the baseline stays.
        assert_eq!(
            record_evaluation(&r, NAME, 3, true).unwrap(),
            set(&[("champion", 3), ("challenger", 1), ("baseline", 1)])
        );
        // v4 loses: it replaces v1 as challenger.
        assert_eq!(
            record_evaluation(&r, NAME, 4, false).unwrap(),
            set(&[("champion", 3), ("challenger", 4), ("baseline", 1)])
        );
        // An operator moves the baseline; promotions never move it back.
        r.set_alias(NAME, BASELINE, 2).unwrap();
        assert_eq!(
            record_evaluation(&r, NAME, 5, true).unwrap(),
            set(&[("champion", 5), ("challenger", 3), ("baseline", 2)])
        );
    }

    #[test]
    fn a_registry_from_before_the_live_set_gets_its_champion_as_baseline() {
        let (_d, r) = registry(2);
        r.set_alias(NAME, CHAMPION, 1).unwrap();
        r.set_alias(NAME, CHALLENGER, 1).unwrap();
        assert_eq!(
            record_evaluation(&r, NAME, 2, true).unwrap(),
            set(&[("champion", 2), ("challenger", 1), ("baseline", 1)])
        );
    }

    #[test]
    fn retention_archives_old_unaliased_versions_only() {
        assert_eq!(
            to_archive(&[1, 2, 3, 4, 5, 6, 7], &BTreeSet::from([1, 3]), 3),
            vec![2, 4]
        );
        assert_eq!(
            to_archive(&[1, 2, 3], &BTreeSet::new(), 0),
            Vec::<u32>::new()
        );
        assert_eq!(to_archive(&[1, 2], &BTreeSet::new(), 5), Vec::<u32>::new());

        let (d, r) = registry(7);
        r.set_alias(NAME, BASELINE, 1).unwrap();
        r.set_alias(NAME, CHALLENGER, 3).unwrap();
        r.set_alias(NAME, CHAMPION, 7).unwrap();
        r.set_alias(NAME, "staging", 2).unwrap();
        assert_eq!(retain(&r, NAME, 3).unwrap(), vec![4]);
        assert_eq!(r.versions(NAME).unwrap(), vec![1, 2, 3, 5, 6, 7]);
        assert_eq!(r.archived(NAME).unwrap(), vec![4]);
        assert!(d.path().join("m/archive/4/model.ubj").exists());
        assert!(d.path().join("m/archive/4/version.json").exists());
        assert!(!d.path().join("m/versions/4/version.json").exists());
        // Nothing more to do; aliases unchanged; numbering continues after the archive.
        assert_eq!(retain(&r, NAME, 3).unwrap(), Vec::<u32>::new());
        assert_eq!(live_set(&r, NAME).unwrap().len(), 3);
        // An archived version can still be aliased (an operator pinning an old baseline).
        r.set_alias(NAME, BASELINE, 4).unwrap();
        assert_eq!(r.alias(NAME, BASELINE).unwrap(), Some(4));
        assert!(r.archive(NAME, 99).is_err());
    }
}
