//! The HLS master playlist as a [`Format`]: the plan drops variants and renditions or
//! rewrites their URIs; there are no breaks to record. The proxy then points the URIs into
//! the session ([`crate::asked`] hint parameters) and serializes.

use crate::apply::InvalidPlan;
use crate::ledger::SessionState;
use crate::pipeline::{Context, Format};
use crate::types::Edit;
use m3u8_rs::MasterPlaylist;

pub struct Master<'a> {
    pub playlist: &'a MasterPlaylist,
}

#[async_trait::async_trait]
impl Format for Master<'_> {
    type Plan = MasterPlaylist;
    type Out = MasterPlaylist;
    const RECORDS: bool = false;

    fn plan(&self, edits: &[Edit]) -> Result<MasterPlaylist, InvalidPlan> {
        crate::apply::hls_master(self.playlist, edits)
    }

    async fn render(
        &self,
        plan: MasterPlaylist,
        _state: &SessionState,
        _cx: &Context<'_>,
    ) -> Result<MasterPlaylist, InvalidPlan> {
        Ok(plan)
    }
}
