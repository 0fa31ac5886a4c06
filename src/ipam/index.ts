/** IPAM: cluster CIDR → node subnets (subnets.ts); node subnet → pod IPs (allocator.ts) over a store. */
export { MAX_SUBNET_PREFIX, chooseFree, contains, freeCount, nodeSubnetAt, nodeSubnetIndex, overlaps, planNodeSubnets, validatePrefixLength } from './subnets.js';
export type { ChooseOptions, NodeSubnetPlan, PlanOptions } from './subnets.js';
export { IpamAllocator, normalizeSubnets } from './allocator.js';
export type { Allocation, AllocatorOptions, PodAddress, PoolUsage } from './allocator.js';
export { AddressPool } from './pool.js';
export { validateOwner, validateOwnerId } from './state.js';
export type { IpamOp, IpamState, IpamStore, Owner, StoredAllocation } from './state.js';
export { FileStore, JOURNAL_FILE, LOCK_FILE } from './filestore.js';
export type { FileStoreOptions, FileStoreRecovery, FileStoreStats } from './filestore.js';
export { MemStore } from './memstore.js';
export type { LockOwner } from './lock.js';
