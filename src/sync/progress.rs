//! How far a running sync is, for a person watching the connector.
//!
//! The engine publishes a [`SyncProgress`] on a `watch` channel as stages start and walks
//! advance; readers (the controller) sample it at their own pace, so a fast sync costs
//! nothing extra and a slow one can still say where it is.

use std::sync::Arc;

use tokio::sync::watch;

/// The stage a sync is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    /// Not started yet (waiting for a free slot is the caller's business).
    #[default]
    Starting,
    /// `user/current`: are the credentials accepted?
    CheckingCredentials,
    /// Listing groups, walking members, searching users, listing spaces and permissions.
    Fetching,
    /// Everything is fetched; grants are expanded and the file is compressed.
    FinishingSnapshot,
}

/// A sample of a running sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// The stage.
    pub stage: Stage,
    /// Groups whose members have been walked.
    pub groups_walked: u64,
    /// Groups listed, once the listing is complete.
    pub groups_total: Option<u64>,
    /// Spaces whose permissions have been walked.
    pub spaces_walked: u64,
    /// Spaces listed, once the listing is complete (`None` also when spaces are off).
    pub spaces_total: Option<u64>,
}

impl SyncProgress {
    /// One short sentence, e.g. `walking group members: 1,200 of 5,000 groups`.
    pub fn describe(&self) -> String {
        match self.stage {
            Stage::Starting => "starting the sync".into(),
            Stage::CheckingCredentials => "checking the credentials".into(),
            Stage::FinishingSnapshot => {
                "finishing the snapshot (expanding group grants, compressing)".into()
            }
            Stage::Fetching => {
                let groups = match self.groups_total {
                    Some(total) => format!(
                        "walking group members: {} of {} groups",
                        thousands(self.groups_walked),
                        thousands(total)
                    ),
                    None => "listing groups".into(),
                };
                match self.spaces_total {
                    Some(total) => format!(
                        "{groups}; space permissions: {} of {} spaces",
                        thousands(self.spaces_walked),
                        thousands(total)
                    ),
                    None => groups,
                }
            }
        }
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Where the engine publishes progress. Cheap to clone; without a receiver it does
/// nothing.
#[derive(Clone, Debug)]
pub struct ProgressSender(Arc<watch::Sender<SyncProgress>>);

impl ProgressSender {
    /// A sender and the receiver that samples it.
    pub fn channel() -> (Self, watch::Receiver<SyncProgress>) {
        let (tx, rx) = watch::channel(SyncProgress::default());
        (Self(Arc::new(tx)), rx)
    }

    /// Changes the sample in place; receivers are notified.
    pub(crate) fn update(&self, change: impl FnOnce(&mut SyncProgress)) {
        self.0.send_modify(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_say_the_stage_and_how_far() {
        let mut p = SyncProgress {
            stage: Stage::Fetching,
            ..SyncProgress::default()
        };
        assert_eq!(p.describe(), "listing groups");
        p.groups_total = Some(5000);
        p.groups_walked = 1200;
        assert_eq!(p.describe(), "walking group members: 1,200 of 5,000 groups");
        p.spaces_total = Some(300);
        p.spaces_walked = 30;
        assert_eq!(
            p.describe(),
            "walking group members: 1,200 of 5,000 groups; space permissions: 30 of 300 spaces"
        );
        p.stage = Stage::FinishingSnapshot;
        assert!(p.describe().starts_with("finishing the snapshot"));
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn updates_reach_the_receiver() {
        let (tx, rx) = ProgressSender::channel();
        tx.update(|p| p.stage = Stage::CheckingCredentials);
        assert_eq!(rx.borrow().stage, Stage::CheckingCredentials);
    }
}
