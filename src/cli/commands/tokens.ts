import type { Command } from 'commander';
import { ControlClient, resolveControlTarget, type ControlTargetOptions } from '../../control/client.js';
import type { TokenInfo } from '../../control/tokens.js';
import { IntermissionError } from '../../domain/index.js';
import { httpUrl } from '../../service/address.js';
import { table, type Output } from '../output.js';
import { targetOptions } from './events.js';

type TargetFlags = ControlTargetOptions & { json?: boolean };

async function clientFor(flags: TargetFlags): Promise<{ client: ControlClient; base: string | undefined }> {
  const target = await resolveControlTarget(flags);
  return { client: new ControlClient(target), base: 'path' in target.address ? undefined : httpUrl(target.address) };
}

export function registerTokenCommands(program: Command, output: Output): void {
  const tokens = program.command('token').description('control-API tokens: create, list, revoke');
  targetOptions(
    tokens
      .command('create')
      .description(
        'issue a tenant token that may list, schedule and cancel events of the given VMs only, or a scrape-only metrics token',
      )
      .option('--tenant <name>', 'tenant name (unique)')
      .option('--vm <name...>', 'the tenant’s VMs')
      .option('--metrics <name>', 'a token that may only scrape GET /metrics (instead of --tenant)')
      .option('--ttl <duration>', 'lifetime, e.g. 7d or 12h (default 30d for tenants, 90d for metrics; at most 365d)'),
  ).action(async (flags: TargetFlags & { tenant?: string; vm?: string[]; metrics?: string; ttl?: string }) => {
    if ((flags.tenant === undefined) === (flags.metrics === undefined)) {
      throw new IntermissionError('INVALID_INPUT', 'give either --tenant <name> --vm <vm...>, or --metrics <name>');
    }
    if (flags.tenant !== undefined && (flags.vm ?? []).length === 0) {
      throw new IntermissionError('INVALID_INPUT', '--tenant needs --vm <vm...>');
    }
    const { client } = await clientFor(flags);
    const ttl = flags.ttl === undefined ? {} : { ttl: flags.ttl };
    const res = await client.post<{
      tenant?: string;
      metrics?: string;
      vms?: string[];
      token: string;
      expiresAt: string;
    }>(
      '/v1/tokens',
      flags.metrics !== undefined
        ? { metrics: flags.metrics, ...ttl }
        : { tenant: flags.tenant, vms: flags.vm, ...ttl },
    );
    if (flags.json) return output.out(JSON.stringify(res));
    const who = res.tenant !== undefined ? `${res.tenant} (${(res.vms ?? []).join(', ')})` : `metrics ${res.metrics}`;
    output.out(`token for ${who}, expires ${res.expiresAt}, shown once:\n${res.token}`);
  });

  targetOptions(tokens.command('list').description('list tokens (never the tokens themselves): operators only')).action(
    async (flags: TargetFlags) => {
      const { client } = await clientFor(flags);
      const res = await client.get<{ tokens: TokenInfo[] }>('/v1/tokens');
      if (flags.json) return output.out(JSON.stringify(res.tokens));
      output.out(
        table(
          res.tokens.map((t) => [
            t.name,
            t.role,
            t.vms.join(','),
            t.createdAt,
            t.expired ? `${t.expiresAt} (expired)` : t.expiresAt,
          ]),
          ['NAME', 'ROLE', 'VMS', 'CREATED', 'EXPIRES'],
        ),
      );
    },
  );

  targetOptions(
    tokens
      .command('revoke')
      .description('revoke a token at once: its requests are refused and its live streams end')
      .argument('<name>'),
  ).action(async (name: string, flags: TargetFlags) => {
    const { client } = await clientFor(flags);
    const res = await client.request<{ revoked: TokenInfo }>('DELETE', `/v1/tokens/${encodeURIComponent(name)}`);
    output.out(flags.json ? JSON.stringify(res.revoked) : `revoked ${res.revoked.name} (${res.revoked.role})`);
  });

  targetOptions(
    program
      .command('dashboard')
      .description(
        'print a one-time dashboard sign-in link (valid 5 minutes, single use): no long-lived token in the URL',
      ),
  ).action(async (flags: TargetFlags) => {
    const { client, base } = await clientFor(flags);
    const res = await client.post<{ path: string; expiresAt: string }>('/v1/sign-in-codes');
    if (flags.json) return output.out(JSON.stringify({ ...res, ...(base ? { url: `${base}${res.path}` } : {}) }));
    output.out(
      base
        ? `${base}${res.path}\n(single use, expires ${res.expiresAt})`
        : `the control API is on a unix socket: open ${res.path} on an HTTP address that forwards to it (single use, expires ${res.expiresAt})`,
    );
  });
}
