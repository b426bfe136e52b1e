// The demo's memory panel, imported by main.ts for its side effect: before anything downloads,
// the GPU memory the chosen model, size and precision need (the dry run's plan, from the configs
// alone: planModelMemory), and a budget: the user's, kept in localStorage where loadPipeline
// takes its default maxMemory from (MAX_MEMORY_SETTING), else the adapter's default
// (defaultMemoryBudget); the panel shows what the planner would do within it (release the text
// encoders, tile the decode) or why no plan fits.

import { defaultMemoryBudget, formatBytes, MAX_MEMORY_SETTING, type ModelSource, parseByteSize, planModelMemory, savedMaxMemory } from '../src/browser.js';

const byId = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

const panel = document.createElement('fieldset');
panel.innerHTML = `<legend>GPU memory</legend>
  <label>Budget (applies at the next model load; empty: this adapter's default) <input id="max-memory" type="text" spellcheck="false" placeholder="e.g. 6GB or 8GiB" /></label>
  <button id="memory-plan-button" type="button" class="secondary">Show the memory this needs</button>
  <pre id="memory-plan" hidden></pre>`;
byId('generate').parentElement!.before(panel);
const budgetInput = byId<HTMLInputElement>('max-memory');
const output = byId<HTMLPreElement>('memory-plan');
const saved = savedMaxMemory();
if (saved !== undefined) budgetInput.value = formatBytes(saved);
// What loadPipeline takes when the field is empty: shown as the field's placeholder.
const adapterDefault = navigator.gpu?.requestAdapter().then((adapter) => (adapter ? defaultMemoryBudget(adapter) : undefined), () => undefined);
void adapterDefault?.then((bytes) => {
  if (bytes !== undefined) budgetInput.placeholder = `default for this adapter: ${formatBytes(bytes)}`;
});

/** The budget field as bytes (empty: the adapter's default, if any); a bad value is shown, not saved. */
async function budget(): Promise<number | undefined> {
  const text = budgetInput.value.trim();
  if (text === '') {
    localStorage.removeItem(MAX_MEMORY_SETTING);
    return adapterDefault;
  }
  const bytes = parseByteSize(text, 'budget');
  localStorage.setItem(MAX_MEMORY_SETTING, String(bytes));
  return bytes;
}

/** The source main.ts will load: a picked file, a picked folder, else the text field. */
function source(): ModelSource {
  const file = byId<HTMLInputElement>('checkpoint').files?.[0];
  const folder = byId<HTMLInputElement>('folder').files;
  const text = byId<HTMLInputElement>('source');
  return file ?? (folder && folder.length > 0 ? folder : text.value.trim() || text.placeholder);
}

async function show(): Promise<void> {
  output.hidden = false;
  output.textContent = 'Planning…';
  try {
    const size = (id: string): number | undefined => (byId<HTMLInputElement>(id).value === '' ? undefined : Number(byId<HTMLInputElement>(id).value));
    const run = { width: size('width'), height: size('height'), steps: size('steps'), dtype: byId<HTMLSelectElement>('precision').value === 'f32' ? ('f32' as const) : undefined, weights: byId<HTMLSelectElement>('weights').value === 'q8' ? ('q8' as const) : undefined };
    const { plan, budget: choice } = await planModelMemory(source(), run, await budget());
    output.textContent = choice === null ? plan : `${plan}\n\n${choice}`;
  } catch (e) {
    output.textContent = (e as Error).message;
  }
}

budgetInput.addEventListener('change', () => void show());
byId('memory-plan-button').addEventListener('click', () => void show());
