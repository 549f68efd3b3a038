/** CPU time (ns) process `pid` has used so far over all its threads (/proc/<pid>/task/<tid>/schedstat). */
export declare function processCpuNs(pid: number): number;
