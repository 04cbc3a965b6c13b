//! Reaching storage nodes over their internal API (a cluster's gateway).
//!
//! [`RemoteNodes`] is a [`NodeDirectory`] over the metadata's node endpoints, with one
//! [`NodeClient`] per endpoint. A connection that cannot be made is answered as
//! `leader_not_available`, so the gateway refreshes its metadata and retries within the
//! request deadline; an error after the request was sent is not retried (the write may
//! have happened).

use crate::state::NodeDirectory;
use fjord_coordinator::ClusterMetadata;
use fjord_protocol::{NodeApi, NodeId, Result};
use fjord_rpc::{ClusterSecret, NodeClient};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Storage nodes by id, from the metadata's endpoints; clients are kept per endpoint.
pub struct RemoteNodes {
    http: reqwest::Client,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    cache: Mutex<HashMap<NodeId, (String, Arc<NodeClient>)>>,
}

impl RemoteNodes {
    /// `secret`: the cluster credential internal calls carry, if the cluster has one.
    pub fn new(metadata: watch::Receiver<Arc<ClusterMetadata>>, secret: Option<&ClusterSecret>) -> Result<Self> {
        Ok(Self { http: fjord_rpc::client::http_client(secret)?, metadata, cache: Mutex::new(HashMap::new()) })
    }
}

impl NodeDirectory for RemoteNodes {
    fn node(&self, id: NodeId) -> Option<Arc<dyn NodeApi>> {
        let endpoint = self.metadata.borrow().nodes.get(&id)?.endpoint.clone();
        let mut cache = self.cache.lock();
        match cache.get(&id) {
            Some((e, node)) if *e == endpoint => Some(node.clone()),
            _ => {
                let node = Arc::new(NodeClient::new(self.http.clone(), &endpoint));
                cache.insert(id, (endpoint, node.clone()));
                Some(node)
            }
        }
    }
}
