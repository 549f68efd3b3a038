/**
 * Branded u64 address types. Every address is a `bigint`; the brand keeps the address spaces apart
 * at compile time (docs/protocol.md#address-spaces): a guest-physical address can never be passed where a
 * front-end virtual (`userspace_addr`) address is expected, and vice versa.
 *
 * @module
 */

declare const guestBrand: unique symbol;
declare const userBrand: unique symbol;

/** A guest-physical address (GPA): descriptor addresses, `guest_phys_addr` of a memory region. u64. */
export type GuestAddress = bigint & { readonly [guestBrand]: true };

/**
 * A front-end virtual address (`userspace_addr` of a memory region): the address space of the ring
 * addresses in SET_VRING_ADDR. Opaque to back-ends; vhostkit's front-end makes them synthetic so that
 * no real host virtual address ever leaves the process. u64.
 */
export type UserAddress = bigint & { readonly [userBrand]: true };

const U64_MAX = (1n << 64n) - 1n;

/** Brands `value` as a {@link GuestAddress}. @throws RangeError if `value` is not a u64. */
export function guestAddress(value: bigint): GuestAddress {
  if (value < 0n || value > U64_MAX) throw new RangeError(`guest address 0x${value.toString(16)} is not a u64`);
  return value as GuestAddress;
}

/** Brands `value` as a {@link UserAddress}. @throws RangeError if `value` is not a u64. */
export function userAddress(value: bigint): UserAddress {
  if (value < 0n || value > U64_MAX) throw new RangeError(`user address 0x${value.toString(16)} is not a u64`);
  return value as UserAddress;
}
