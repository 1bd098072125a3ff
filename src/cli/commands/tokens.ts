import type { Command } from 'commander';
import { ControlClient, resolveControlTarget } from '../../control/client.js';
import type { Output } from '../output.js';
import { targetOptions } from './events.js';

export function registerTokenCommands(program: Command, output: Output): void {
  const tokens = program.command('token').description('control-API tokens');
  targetOptions(
    tokens
      .command('create')
      .description('issue a tenant token that may list, schedule and cancel events of the given VMs only')
      .requiredOption('--tenant <name>', 'tenant name (unique)')
      .requiredOption('--vm <name...>', 'the tenant’s VMs'),
  ).action(
    async (flags: {
      tenant: string;
      vm: string[];
      state?: string;
      control?: string;
      tokenFile?: string;
      token?: string;
      json?: boolean;
    }) => {
      const client = new ControlClient(await resolveControlTarget(flags));
      const res = await client.post<{ tenant: string; vms: string[]; token: string }>('/v1/tokens', {
        tenant: flags.tenant,
        vms: flags.vm,
      });
      output.out(
        flags.json ? JSON.stringify(res) : `token for ${res.tenant} (${res.vms.join(', ')}), shown once:\n${res.token}`,
      );
    },
  );
}
