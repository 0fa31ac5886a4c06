// Real container runtimes calling podnet-cni (CNI backend of podman; containerd's
// `ctr run --cni`): each runtime runs inside a node namespace of a virtual cluster, its
// container gets an address from the node's pod subnet through the agent and reaches a
// pod the agent made for the API; removing the container releases everything (containerd
// sends DEL with an empty CNI_NETNS, after the namespace is gone).
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { Node, Pod } from '../src/client/types.js';
import { alive } from '../src/kernel/pause.js';
import { Cidr } from '../src/util/ipnet.js';
import { Scope, insideOwnNetns, runPrefix, skipReason, waitFor, testTempDir } from './lib/harness.js';
import { oneNodeCluster } from './lib/agents.js';

const PLUGIN = fileURLToPath(new URL('../../native/build/Release/podnet-cni', import.meta.url));
const have = async (cmd: string) => (await execa(cmd, ['--version'], { reject: false }).catch(() => ({ exitCode: 1 }))).exitCode === 0;
const missing = [...(await Promise.all(['podman', 'ctr', 'containerd', 'runc'].map(async (c) => ((await have(c)) ? undefined : c))))].filter(Boolean);
const skip = skipReason() ?? (missing.length ? `not installed: ${missing.join(', ')} (scripts/setup.sh installs them)` : undefined) ?? (existsSync('/usr/lib/cni/loopback') ? undefined : 'the reference loopback plugin (containernetworking-plugins) is not installed');

/** /etc/cni/net.d files of crashed runs (ctr reads that directory and nothing else). */
function sweepConflists(): void {
  for (const f of existsSync('/etc/cni/net.d') ? readdirSync('/etc/cni/net.d') : []) {
    const m = /^10-pnt-(\d+)\.conflist$/.exec(f);
    if (m && !alive(Number(m[1]))) rmSync(join('/etc/cni/net.d', f), { force: true });
  }
}

if (skip) {
  t.test('container runtimes call podnet-cni', { skip }, async () => undefined);
} else if (await insideOwnNetns(import.meta.url, 'runtimes')) {
  sweepConflists();
  const scope = new Scope('rt');
  t.teardown(() => scope.cleanup());
  const { node, api, agent } = await oneNodeCluster(scope);
  const dir = testTempDir('rt');
  scope.defer(() => rmSync(dir, { recursive: true, force: true }));
  const inNode = (cmd: string, args: string[], opts: { env?: Record<string, string>; input?: string; timeout?: number } = {}) =>
    execa('nsenter', ['--net=' + node.netns.path, '--', cmd, ...args], { reject: false, timeout: opts.timeout ?? 120_000, env: { ...process.env, ...(opts.env ?? {}) }, ...(opts.input !== undefined ? { input: opts.input } : {}) });

  // A pod made by the agent for the API, for the containers to reach.
  await api.call('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'target' }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'x' }] } });
  const target = await waitFor(async () => {
    const p = (await api.call<Pod>('GET', '/api/v1/namespaces/default/pods/target')).body;
    return p.status?.podIP ? p : undefined;
  }, 30_000, 'the target pod').catch((e: unknown) => {
    t.comment(agent.logs().slice(-3000));
    throw e;
  });
  const subnet = Cidr.parse((await api.call<Node>('GET', '/api/v1/nodes/n1')).body.spec!.podCIDR!);
  const targetIP = target!.status!.podIP!;

  // The network config and plugin dir the runtimes use.
  const conflist = JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'podnet-cni', socket: agent.cniSocket }] });
  const plugins = join(dir, 'plugins');
  const netconf = join(dir, 'net.d');
  mkdirSync(plugins);
  mkdirSync(netconf);
  symlinkSync(PLUGIN, join(plugins, 'podnet-cni'));
  symlinkSync('/usr/lib/cni/loopback', join(plugins, 'loopback'));
  writeFileSync(join(netconf, 'podnet.conflist'), conflist);

  // A busybox image without a registry: a rootfs tar imported into podman.
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  await execa('cp', ['/bin/busybox', join(rootfs, 'bin', 'busybox')]);
  for (const a of ['sh', 'ip', 'ping', 'cat', 'echo', 'sleep', 'nc']) symlinkSync('busybox', join(rootfs, 'bin', a));
  await execa('tar', ['-C', rootfs, '-cf', join(dir, 'rootfs.tar'), '.']);
  const conf = join(dir, 'containers.conf');
  writeFileSync(conf, `[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=10000:10000"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["${plugins}"]\nnetwork_config_dir = "${netconf}"\n`);
  const podmanArgs = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--tmpdir', join(dir, 'tmp')];
  const podman = (...args: string[]) => inNode('podman', [...podmanArgs, ...args], { env: { CONTAINERS_CONF: conf } });
  scope.defer(async () => {
    await podman('rm', '-af');
    // runc leaves podman's parent cgroup behind in every v1 controller: remove it, deepest first.
    for (const ctl of readdirSync('/sys/fs/cgroup')) {
      const top = join('/sys/fs/cgroup', ctl, 'libpod_parent');
      if (existsSync(top)) await execa('find', [top, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';'], { reject: false });
    }
  });
  const imported = await podman('import', '--change', 'CMD ["/bin/sh"]', join(dir, 'rootfs.tar'), 'localhost/bbox:latest');
  if (imported.exitCode !== 0) throw new Error(`podman import: ${imported.stderr}`);

  const cniRecords = () => (existsSync(join(agent.stateDir, 'sandboxes')) ? readdirSync(join(agent.stateDir, 'sandboxes')).filter((f) => f.startsWith('cni-')) : []);

  await t.test('podnet-cni against the agent: every command of CNI 1.1, and bad input changing nothing', async (t) => {
    const call = (command: string, env: Record<string, string>, stdin: string) =>
      inNode(PLUGIN, [], { env: { CNI_COMMAND: command, CNI_PATH: '/usr/lib/cni', CNI_IFNAME: 'eth0', ...env }, input: stdin, timeout: 30_000 });
    const conf11 = JSON.stringify({ cniVersion: '1.1.0', name: 'podnet', type: 'podnet-cni', socket: agent.cniSocket });
    const version = await call('VERSION', {}, '{"cniVersion":"1.1.0"}');
    t.equal(version.exitCode, 0, 'VERSION');
    t.match(JSON.parse(version.stdout), { supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] }, 'lists the versions');
    t.equal((await call('STATUS', {}, conf11)).exitCode, 0, 'STATUS: ready');
    const ns = await scope.netns('cni-a');
    const env = { CNI_CONTAINERID: 'cni-a', CNI_NETNS: ns.path };
    const add = await call('ADD', env, conf11);
    t.equal(add.exitCode, 0, `ADD${add.exitCode ? `: ${add.stdout}` : ''}`);
    const result = JSON.parse(add.stdout) as { ips: { address: string; gateway: string; interface: number }[]; interfaces: { name: string; sandbox?: string }[]; routes: { dst: string; gw: string }[] };
    t.ok(subnet.contains(result.ips[0]!.address.split('/')[0]!), `the result's address ${result.ips[0]!.address} is in the node subnet`);
    t.equal(result.interfaces[result.ips[0]!.interface]?.sandbox, ns.path, 'the address is on the sandbox interface');
    t.same(result.routes, [{ dst: '0.0.0.0/0', gw: result.ips[0]!.gateway }], 'and a default route via the gateway');
    const withPrev = JSON.stringify({ ...JSON.parse(conf11), prevResult: result });
    t.equal((await call('CHECK', env, withPrev)).exitCode, 0, 'CHECK of a healthy attachment');
    // Break it: remove eth0 in the container; CHECK says so.
    await execa('nsenter', ['--net=' + ns.path, '--', 'ip', 'link', 'del', 'eth0']);
    const broken = await call('CHECK', env, withPrev);
    t.not(broken.exitCode, 0, 'CHECK of a broken attachment fails');
    t.match(broken.stdout, /eth0 is missing in the container|host interface .* is missing/, 'and says what is wrong');
    // GC with no valid attachment removes it (and releases its address).
    const gc = await call('GC', {}, JSON.stringify({ ...JSON.parse(conf11), 'cni.dev/valid-attachments': [] }));
    t.equal(gc.exitCode, 0, 'GC');
    await waitFor(() => cniRecords().length === 0, 5000, 'GC to remove the attachment');
    t.pass('GC removed the stale attachment');
    // Bad input: a netns path that is not a network namespace; stdin that is not JSON; a missing variable.
    const notNs = await call('ADD', { CNI_CONTAINERID: 'cni-b', CNI_NETNS: '/etc/hostname' }, conf11);
    t.not(notNs.exitCode, 0, 'ADD into a path that is not a namespace fails');
    t.match(JSON.parse(notNs.stdout), { code: 4 }, 'with CNI code 4 (invalid environment)');
    const notJson = await call('ADD', env, 'this is not json');
    t.match(JSON.parse(notJson.stdout), { code: 6 }, 'stdin that is not JSON: code 6');
    const noId = await call('ADD', { CNI_NETNS: ns.path }, conf11);
    t.match(JSON.parse(noId.stdout), { code: 4, msg: /CNI_CONTAINERID/ }, 'a missing CNI_CONTAINERID: code 4 naming it');
    t.same(cniRecords(), [], 'nothing was created by the failed calls');
    const del = await call('DEL', { CNI_CONTAINERID: 'cni-gone', CNI_NETNS: '' }, conf11);
    t.equal(del.exitCode, 0, 'DEL of an unknown attachment with an empty CNI_NETNS succeeds');
  });

  await t.test('podman (CNI backend) runs a busybox container on the podnet network', async (t) => {
    const logFrom = agent.logs().length;
    const r = await podman('run', '--rm', '--network', 'podnet', 'localhost/bbox:latest', 'sh', '-c', `ip -4 -o addr show eth0; ping -c 1 -W 2 ${targetIP} && echo REACHED`);
    t.equal(r.exitCode, 0, `podman run succeeded${r.exitCode ? `: ${r.stderr}\n${agent.logs().slice(-2000)}` : ''}`);
    const ip = /inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(r.stdout);
    t.ok(ip && subnet.contains(ip[1]!), `the container got ${ip?.[1]} from the node subnet ${subnet}`);
    t.equal(ip?.[2], String(subnet.prefix), 'with the subnet prefix length');
    t.match(r.stdout, /REACHED/, `the container reached the pod ${targetIP}`);
    await waitFor(() => cniRecords().length === 0, 10_000, 'the attachment to be removed');
    t.same(cniRecords(), [], 'podman rm: DEL removed the attachment record');
    t.notOk(agent.logs().slice(logFrom).includes('"cni request failed"'), 'no CNI request of podman failed');
  });

  await t.test('ctr run --cni (containerd): DEL arrives with an empty CNI_NETNS and succeeds', async (t) => {
    const cdir = join(dir, 'containerd');
    mkdirSync(cdir);
    const sock = join(cdir, 'containerd.sock');
    writeFileSync(join(cdir, 'config.toml'), `version = 2\nroot = "${cdir}/root"\nstate = "${cdir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n`);
    const daemon = execa('nsenter', ['--net=' + node.netns.path, '--', 'containerd', '--config', join(cdir, 'config.toml')], { reject: false });
    scope.own(daemon.pid!);
    await waitFor(() => existsSync(sock), 10_000, 'containerd to listen');
    const saved = await podman('save', '--format', 'oci-archive', '-o', join(dir, 'bbox-oci.tar'), 'localhost/bbox:latest');
    t.equal(saved.exitCode, 0, 'image exported');
    const ctr = (...args: string[]) => inNode('ctr', ['--address', sock, '-n', 'pnt', ...args]);
    t.equal((await ctr('image', 'import', '--base-name', 'localhost/bbox', join(dir, 'bbox-oci.tar'))).exitCode, 0, 'image imported');
    // ctr reads /etc/cni/net.d only: a file named for this run, removed afterwards.
    mkdirSync('/etc/cni/net.d', { recursive: true });
    const etc = `/etc/cni/net.d/10-${runPrefix()}.conflist`;
    writeFileSync(etc, conflist);
    scope.defer(() => rmSync(etc, { force: true }));
    const r = await ctr('run', '--rm', '--cni', 'localhost/bbox:latest', 'c1', 'sh', '-c', `ip -4 -o addr show eth0; ping -c 1 -W 2 ${targetIP} && echo REACHED`);
    t.equal(r.exitCode, 0, `ctr run succeeded${r.exitCode ? `: ${r.stderr}\n${agent.logs().slice(-2000)}` : ''}`);
    const ip = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(r.stdout);
    t.ok(ip && subnet.contains(ip[1]!), `the container got ${ip?.[1]} from the node subnet ${subnet}`);
    t.match(r.stdout, /REACHED/, 'and reached the pod');
    await waitFor(() => cniRecords().length === 0, 10_000, 'the attachment to be removed');
    t.same(cniRecords(), [], 'DEL with the namespace gone removed the attachment and released the address');
    rmSync(etc, { force: true });
  });
}
