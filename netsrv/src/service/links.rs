//! `LinkWatcher`: link state as the drivers report it.

use super::*;

pub struct LinkWatcherServer {
    pub shared: Rc<Shared>,
    pub port: String,
}

impl link_watcher::Server for LinkWatcherServer {
    async fn link_changed(
        self: CapRc<Self>,
        params: link_watcher::LinkChangedParams,
        _: link_watcher::LinkChangedResults,
    ) -> Result<(), Error> {
        // The carrier word in the port's shared region says the same and
        // is what the data path reads; this event wakes the stack at once.
        let up = params.get()?.get_up();
        tracing::info!(port = %self.port, up, "link changed");
        self.shared.kick.notify_one();
        Ok(())
    }
}
