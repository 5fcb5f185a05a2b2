/**
 * What is copied into the guest.
 *
 * @module
 */

/** Paths of the repository never copied into the guest (the same list as in `vm/Vagrantfile`). */
export const SYNC_EXCLUDES: readonly string[] = [
  ".git/",
  ".vagrant/",
  "node_modules/",
  "vm/.cache/",
  "bench-results/",
];

/** rsync arguments copying the repository (without source, destination and `-e`). */
export function syncArgs(): string[] {
  return [
    "--archive",
    "--delete",
    "--compress",
    "--copy-links",
    ...SYNC_EXCLUDES.map((path) => `--exclude=${path}`),
  ];
}
