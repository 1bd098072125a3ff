// @ts-check
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bench/results/**', 'tmp/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      // Resolves `./x.js` imports to the `./x.ts` files, as TypeScript does: without it the import
      // rules below see no module at all and check nothing.
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
      // …and parses them with the TypeScript parser, to follow their own imports.
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/extensions': ['.ts', '.js', '.mjs'],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test reports what these return itself; awaiting them is not how suites are written.
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import-x/no-cycle': 'error',
      // The layers, by where a module really resolves (not by how its import is spelt): the domain
      // depends on nothing; the QMP client on the domain; hypervisor drivers on both; stores on the
      // domain; nothing below the CLI imports it.
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            {
              target: './src/domain',
              from: './src',
              except: ['./domain'],
              message: 'src/domain depends on nothing outside it.',
            },
            {
              target: './src/qmp',
              from: './src',
              except: ['./qmp', './domain'],
              message: 'src/qmp depends only on the domain.',
            },
            {
              target: './src/hypervisor',
              from: './src',
              except: ['./hypervisor', './domain', './qmp'],
              message: 'Hypervisor drivers depend only on the domain and the QMP client.',
            },
            {
              target: './src/store',
              from: './src',
              except: ['./store', './domain'],
              message: 'Stores depend only on the domain.',
            },
            {
              target: [
                'agent',
                'control',
                'controller',
                'dashboard',
                'domain',
                'hypervisor',
                'imds',
                'metrics',
                'qmp',
                'service',
                'store',
                'testing',
              ].map((d) => `./src/${d}`),
              from: './src/cli',
              message: 'Nothing below the CLI imports it.',
            },
          ],
        },
      ],
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/internal/*', '!./internal/*'],
              message: 'Import a module through its index.ts, not its internals.',
            },
          ],
        },
      ],
    },
  },
  {
    // The pure domain does no I/O: no network, no files, no clocks of its own.
    files: ['src/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', 'fs', 'http', 'net'], message: 'src/domain is pure: take I/O through an interface.' },
          ],
        },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'Take `now` as a parameter.' },
        {
          selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']",
          message: 'Take `now` as a parameter.',
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
