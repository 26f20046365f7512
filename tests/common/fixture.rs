//! The setup most tests share: a test CA, a TLS upstream for `api.test` signed by
//! it, and `tollgate serve` in front of it with one policy, trusting that CA and
//! resolving `api.test` to the upstream.
//!
//! ```ignore
//! let up = ApiUpstream::start(&["api.test"]).await;
//! let setup = up.setup("main", &policy(up.api.port));
//! let f = up.serve((), setup);
//! ```

use super::upstream::{start_upstream, TestCa, Upstream};
use super::{spawn_serve, start_proxy, write_setup, ProxyProc, ProxySetup};
use std::path::Path;

/// A running proxy in front of the `api.test` upstream. `M` holds whatever more
/// a test file starts (other upstreams); `()` when nothing.
pub struct Fixture<M = ()> {
    /// The CA that signed the upstream's certificate.
    pub ca: TestCa,
    /// The TLS upstream serving `api.test`.
    pub api: Upstream,
    /// What else the test file started.
    pub more: M,
    /// The proxy.
    pub proxy: ProxyProc,
    /// The proxy's extra environment, to restart it with.
    pub env: Vec<(String, String)>,
}

impl<M> Fixture<M> {
    /// `https://api.test:PORT`.
    pub fn base(&self) -> String {
        format!("https://api.test:{}", self.api.port)
    }

    /// `https://api.test:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }
}

/// The first half of a [`Fixture`]: the test CA and the `api.test` upstream.
pub struct ApiUpstream {
    /// The upstream's CA.
    pub ca: TestCa,
    /// The TLS upstream.
    pub api: Upstream,
}

impl ApiUpstream {
    /// A new test CA and a TLS upstream for `names` signed by it.
    pub async fn start(names: &[&str]) -> Self {
        let ca = TestCa::new("upstream test CA");
        let api = start_upstream(Some(ca.server_config(names))).await;
        Self { ca, api }
    }

    /// The usual proxy setup: one policy `name` whose text is `yaml`, the
    /// upstream's CA trusted, `api.test` resolved to the upstream.
    pub fn setup(&self, name: &str, yaml: &str) -> ProxySetup {
        ProxySetup::with_policy(name, yaml)
            .trust(&self.ca.cert_pem)
            .resolve("api.test", self.api.port)
    }

    /// Starts the proxy from `setup`.
    pub fn serve<M>(self, more: M, setup: ProxySetup) -> Fixture<M> {
        let proxy = start_proxy(&setup);
        self.into_fixture(more, proxy, setup)
    }

    /// Starts the proxy from `setup`, once `prepare` has filled its working
    /// directory.
    pub fn serve_prepared<M>(
        self,
        more: M,
        setup: ProxySetup,
        prepare: impl FnOnce(&Path),
    ) -> Fixture<M> {
        let dir = write_setup(&setup);
        prepare(dir.path());
        let proxy = spawn_serve(dir, &setup.env);
        self.into_fixture(more, proxy, setup)
    }

    fn into_fixture<M>(self, more: M, proxy: ProxyProc, setup: ProxySetup) -> Fixture<M> {
        Fixture {
            ca: self.ca,
            api: self.api,
            more,
            proxy,
            env: setup.env,
        }
    }
}
