import type { Command } from 'commander';
import { FleetIndex } from '../../domain/index.js';
import { loadFleetFile } from '../../service/fleet-file.js';
import { table, type Output } from '../output.js';

export function registerFleetCommands(program: Command, output: Output): void {
  const fleet = program.command('fleet').description('fleet files');
  fleet
    .command('validate')
    .description('check a fleet file and show its VMs with their scope, update and fault domain')
    .argument('<file>')
    .option('--json', 'print the normalised fleet as JSON')
    .action(async (file: string, flags: { json?: boolean }) => {
      const parsed = await loadFleetFile(file);
      if (flags.json) return output.out(JSON.stringify(parsed));
      const index = new FleetIndex(parsed);
      output.out(
        `${file}: ${parsed.hosts.length} hosts, ${parsed.availabilitySets.length} availability sets, ${parsed.vms.length} VMs, ${index.scopes().length} scopes`,
      );
      output.out(
        table(
          parsed.vms.map((vm) => [
            vm.name,
            vm.host,
            vm.availabilitySet ?? '(standalone)',
            String(vm.updateDomain),
            String(vm.faultDomain),
            vm.vmId,
          ]),
          ['VM', 'HOST', 'SET', 'UD', 'FD', 'VMID'],
        ),
      );
    });
}
