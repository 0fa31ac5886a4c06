{
  "targets": [
    {
      "target_name": "podnet_native",
      "sources": ["src/addon.cc", "src/nsutil.c", "src/udptun.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_cc": ["-Wall", "-Wextra", "-O2", "-std=c++17", "-fexceptions"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"]
    },
    {
      "target_name": "pause",
      "type": "executable",
      "sources": ["src/pause.c", "src/nsutil.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "podnet-probe",
      "type": "executable",
      "sources": ["src/probe.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "podnet-cni",
      "type": "executable",
      "sources": ["src/podnet-cni.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
