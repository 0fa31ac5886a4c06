/**
 * The API client: kubeconfig / flags / in-cluster config, an HTTP transport on undici,
 * typed resource clients (get, list, create, update, patch, delete, watch) and
 * informers. Works against `podnet api` and a real kube-apiserver.
 *
 *   const client = new KubeClient(await loadKubeconfig({ path }));
 *   const pods = new Informer({ source: client.resource(RESOURCES.pods) });
 *   pods.onAdd((p) => ...);
 *   void pods.run(signal);
 *   await pods.waitForSync(signal);
 */
export * from './errors.js';
export * from './kubeconfig.js';
export * from './http.js';
export * from './watch.js';
export * from './rest.js';
export * from './backoff.js';
export * from './informer.js';
export * from './resources.js';
export type * from './types.js';
