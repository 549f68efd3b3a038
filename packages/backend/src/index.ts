/**
 * placeholder
 * @packageDocumentation
 */
export {};
