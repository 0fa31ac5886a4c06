// The UDP transport's packet loop (see udptun.cc). addon.cc's Init calls InitUdpTunnel.
#pragma once

#include <napi.h>

namespace podnet {

// Adds udpTunnelOpen(opts) to `exports`.
void InitUdpTunnel(Napi::Env env, Napi::Object exports);

}  // namespace podnet
