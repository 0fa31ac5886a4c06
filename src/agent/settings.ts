/**
 * What `podnet cleanup` and `podnet pod netns` must know of the agent that used a state
 * dir, written by the agent when it starts (`<stateDir>/agent.json`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SETTINGS = 'agent.json';

export interface AgentSettings {
  nodeName: string;
  netnsPrefix: string;
}

export function writeAgentSettings(stateDir: string, s: AgentSettings): void {
  writeFileSync(join(stateDir, SETTINGS), JSON.stringify(s), { mode: 0o600 });
}

export function readAgentSettings(stateDir: string): AgentSettings | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, SETTINGS), 'utf8')) as AgentSettings;
  } catch {
    return undefined;
  }
}

