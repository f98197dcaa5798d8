// Types of history.mjs, for the tests that check the chaos checker.
export function consumerHistory(text: string): { commits: Map<string, number>; takes: Map<string, number>; afterCommit: Set<string> };
