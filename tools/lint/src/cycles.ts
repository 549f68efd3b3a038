/**
 * Cycles in a directed graph: used for imports between source files and for the package graph.
 * @module
 */

/**
 * One cycle per strongly connected component of `edges` that has a cycle (a self-edge counts),
 * each given as the path of a shortest cycle through the component's first node in sorted order,
 * ending where it starts (`[a, b, a]`). Deterministic: components and paths are sorted.
 * @param edges - node → the nodes it points at; nodes that appear only as targets are allowed.
 */
export function findCycles(edges: ReadonlyMap<string, readonly string[]>): string[][] {
  const nodes = [...new Set([...edges.keys(), ...[...edges.values()].flat()])].sort();
  const next = (n: string): readonly string[] => edges.get(n) ?? [];
  // Tarjan's algorithm, iterative so that deep import chains cannot overflow the stack.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let counter = 0;
  for (const start of nodes) {
    if (index.has(start)) continue;
    const work: { node: string; i: number }[] = [{ node: start, i: 0 }];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const top = work[work.length - 1] as { node: string; i: number };
      const targets = next(top.node);
      if (top.i < targets.length) {
        const t = targets[top.i++] as string;
        if (!index.has(t)) {
          index.set(t, counter);
          low.set(t, counter++);
          stack.push(t);
          onStack.add(t);
          work.push({ node: t, i: 0 });
        } else if (onStack.has(t)) {
          low.set(top.node, Math.min(low.get(top.node) as number, index.get(t) as number));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined) low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(top.node) as number));
      if (low.get(top.node) === index.get(top.node)) {
        const component: string[] = [];
        for (;;) {
          const n = stack.pop() as string;
          onStack.delete(n);
          component.push(n);
          if (n === top.node) break;
        }
        components.push(component.sort());
      }
    }
  }
  const cycles: string[][] = [];
  for (const component of components) {
    const first = component[0] as string;
    if (component.length === 1 && !next(first).includes(first)) continue;
    cycles.push(shortestCycle(first, new Set(component), next));
  }
  return cycles.sort((a, b) => (a[0] as string).localeCompare(b[0] as string));
}

/** Breadth-first: the shortest path from `start` back to itself inside `within`. */
function shortestCycle(start: string, within: ReadonlySet<string>, next: (n: string) => readonly string[]): string[] {
  const parent = new Map<string, string>();
  const queue: string[] = [start];
  for (let head = 0; head < queue.length; head++) {
    const n = queue[head] as string;
    for (const t of [...next(n)].sort()) {
      if (!within.has(t)) continue;
      if (t === start) {
        const path = [start];
        for (let p: string | undefined = n; p !== undefined; p = p === start ? undefined : parent.get(p)) path.unshift(p);
        return path;
      }
      if (!parent.has(t)) {
        parent.set(t, n);
        queue.push(t);
      }
    }
  }
  return [start, start];
}
