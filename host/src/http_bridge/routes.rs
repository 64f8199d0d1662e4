//! The built-in HTTP server's remote routes: one for each `default` link from an http-server
//! provider started on this host to a component's `wasi:http/incoming-handler`, configured like
//! the local route the same link gives (an `address` is required). The server serves a route
//! in-process while the component runs here and forwards it over wRPC otherwise.

use trellis_providers::http_server::RemoteRoute;

use crate::builtins::Builtin;
use crate::plugin_config::link_config;
use crate::rpc::DEFAULT_LINK;
use crate::state::HostState;

/// Brings the HTTP server's remote routes in line with the links and providers.
pub async fn sync(state: &HostState) {
    let Some(server) = &state.plugins.http_server else {
        return;
    };
    let mut routes = Vec::new();
    for link in state.links.links() {
        let incoming_handler = link.wit_namespace == "wasi"
            && link.wit_package == "http"
            && link.interfaces.iter().any(|i| i == "incoming-handler");
        if link.name != DEFAULT_LINK || !incoming_handler {
            continue;
        }
        let Some(provider) = state.providers.get(&link.source_id) else {
            continue;
        };
        if provider.builtin.builtin != Builtin::HttpServer {
            continue;
        }
        let config = link_config(state, &provider, &link.target_config, &link.source_config);
        if config.contains_key("address") {
            routes.push(RemoteRoute {
                source_id: link.source_id,
                component_id: link.target,
                config,
            });
        }
    }
    for (route, error) in server.set_remote_routes(routes).await {
        tracing::warn!(provider = %route.source_id, component = %route.component_id, "HTTP route: {error}");
    }
}
