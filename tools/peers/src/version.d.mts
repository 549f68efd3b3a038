/** The first `major.minor[.patch]` in `text` after `label`, or undefined when there is none. */
export declare function parseVersion(text: string, label: string): [number, number, number] | undefined;
/** Throws unless `text` names a version at least `min` ("11.1", "1.14.0") after `label`; returns it. */
export declare function assertVersionAtLeast(text: string, label: string, min: string): [number, number, number];
