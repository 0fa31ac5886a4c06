/**
 * The node (V8) options the agent is run with: the systemd unit sets them as NODE_OPTIONS
 * (packaging/systemd/podnet-agent.service; src/packaging.test.ts checks they agree), and
 * the demo, the netns tests and the benchmarks start their agents with them.
 *
 * `--max-semi-space-size=4` (MiB; V8's default on 64-bit is 16, i.e. a young generation
 * of ~34 MB committed for good): the agent is a long-lived daemon whose work comes in
 * bursts (a sync), and a young generation that size stays committed between them. Measured
 * at 10,000 Services × 10 endpoints (nftables, 3 agents, 15 s after a burst of 1,000
 * endpoint changes; two quick runs one after the other, `npm run bench -- proxy --sizes 10000
 * --modes nftables --skip baselines,modes,vm`, so not one same-run comparison): VmRSS
 * 246–261 MB with V8's default, 222–223 MB with 4; first full sync and burst latency within
 * the run-to-run noise. Node reads it
 * only at startup (v8.setFlagsFromString after start does not resize the heap), hence an
 * option and not code.
 */
export const AGENT_NODE_OPTIONS: readonly string[] = ['--max-semi-space-size=4'];
