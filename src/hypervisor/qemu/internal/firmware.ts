/**
 * Firmware pinning: when a VM is created, the firmware and option ROM images it boots with are
 * copied into its directory, and every process of the VM is given that directory first (`-L`), so
 * that a later process (a swap to another QEMU build, a restart) loads the very same images. ROM
 * contents and sizes are part of what an incoming migration checks, and a newer QEMU ships other
 * images; with its own copies the VM does not depend on what the host has installed since.
 *
 * Pinned: SeaBIOS (`bios-256k.bin`) for a BIOS or direct kernel boot, `linuxboot_dma.bin` for a
 * direct kernel boot, `kvmvapic.bin` when the VM has TPR patching on, OVMF's code (read-only) and a
 * per-VM copy of its variable store for a UEFI boot. NICs get no option ROM (`romfile=`), so none is
 * pinned for them.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { IntermissionError } from '../../../domain/index.js';
import type { PinnedFirmware, ResolvedVmSpec } from './layout.js';

/** The names OVMF's code and variable store get in a VM's firmware directory. */
export const OVMF_CODE_FILE = 'OVMF_CODE.fd';
export const OVMF_VARS_FILE = 'OVMF_VARS.fd';

/** OVMF builds as Debian ships them: code and variable store must come from one build. */
const OVMF_VARIANTS: readonly (readonly [string, string])[] = [
  ['OVMF_CODE_4M.fd', 'OVMF_VARS_4M.fd'],
  ['OVMF_CODE.fd', 'OVMF_VARS.fd'],
];

/** The directories a build's firmware is looked for in, in order. */
export function firmwareSearchDirs(
  binary: string,
  dataDir: string | undefined,
  searchPath: readonly string[],
): string[] {
  const dirs = [
    ...(dataDir === undefined ? [] : [dataDir]),
    // A build unpacked under a prefix (`<prefix>/usr/bin/qemu-system-x86_64`) has its data beside it.
    join(dirname(dirname(binary)), 'share', 'qemu'),
    ...searchPath,
  ];
  return [...new Set(dirs)];
}

/** The image files (name in the VM's directory ← candidate names to look for) a VM boots with. */
export function firmwareNeeds(spec: ResolvedVmSpec): { readonly name: string; readonly candidates: string[] }[] {
  const boot = spec.boot ?? { kind: 'kernel' };
  const needs: { name: string; candidates: string[] }[] = [];
  if (boot.kind === 'kernel' || boot.firmware === 'seabios') needs.push({ name: 'bios-256k.bin', candidates: [] });
  if (boot.kind === 'kernel') needs.push({ name: 'linuxboot_dma.bin', candidates: [] });
  if (spec.vapic) needs.push({ name: 'kvmvapic.bin', candidates: [] });
  return needs.map((need) => ({ name: need.name, candidates: [need.name] }));
}

/**
 * Copies the images the VM boots with into `dir` (created), looking for each in `searchDirs` in
 * order. For OVMF the code is made read-only and the variable store is the VM's own writable copy.
 *
 * @throws IntermissionError `INVALID_INPUT` naming an image found in none of the directories
 */
export function pinFirmware(
  spec: ResolvedVmSpec,
  options: { readonly dir: string; readonly searchDirs: readonly string[]; readonly fromVersion: string },
): PinnedFirmware {
  const { dir, searchDirs } = options;
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const find = (name: string): string | undefined =>
    searchDirs.map((d) => join(d, name)).find((path) => existsSync(path));
  for (const need of firmwareNeeds(spec)) {
    const source = need.candidates.map(find).find((path) => path !== undefined);
    if (source === undefined) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `VM ${spec.vm}: firmware image ${need.name} is in none of ${searchDirs.join(', ')} (set the build's dataDir or firmwareSearchPath)`,
      );
    }
    copyFileSync(source, join(dir, need.name));
    chmodSync(join(dir, need.name), 0o444);
    files.push(need.name);
  }
  if (spec.boot?.kind === 'firmware' && spec.boot.firmware === 'ovmf') {
    let pair: readonly [string, string] | undefined;
    for (const searchDir of searchDirs) {
      pair = OVMF_VARIANTS.map(([c, v]) => [join(searchDir, c), join(searchDir, v)] as const).find(
        ([c, v]) => existsSync(c) && existsSync(v),
      );
      if (pair !== undefined) break;
    }
    if (pair === undefined) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `VM ${spec.vm}: no OVMF code and variable store in ${searchDirs.join(', ')} (apt-get install ovmf)`,
      );
    }
    copyFileSync(pair[0], join(dir, OVMF_CODE_FILE));
    chmodSync(join(dir, OVMF_CODE_FILE), 0o444);
    copyFileSync(pair[1], join(dir, OVMF_VARS_FILE));
    chmodSync(join(dir, OVMF_VARS_FILE), 0o600);
    files.push(OVMF_CODE_FILE, OVMF_VARS_FILE);
  }
  return Object.freeze({ dir, files: Object.freeze(files), fromVersion: options.fromVersion });
}
