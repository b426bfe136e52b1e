// Browser: tuning tables (tuning-table.ts's JSON text) in IndexedDB, one record per adapter
// under its hash, in the database TUNING_DB. A put is one transaction:
// whole or not at all.

import { type AdapterIdentity, adapterHash, type TuningStore } from '../gpu/tuning-table.js';

export const TUNING_DB = 'sdxl-turbo-webgpu-tuning';
const TABLES = 'tables';

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error('IndexedDB request failed'));
  });
}

function openDb(): Promise<IDBDatabase> {
  const r = indexedDB.open(TUNING_DB, 1);
  r.onupgradeneeded = () => r.result.createObjectStore(TABLES);
  return request(r);
}

async function withTables<T>(mode: IDBTransactionMode, work: (tables: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await openDb();
  try {
    const tx = db.transaction(TABLES, mode);
    const done = new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onabort = tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    });
    const [result] = await Promise.all([request(work(tx.objectStore(TABLES))), done]);
    return result;
  } finally {
    db.close();
  }
}

/** Whether this page can keep tables (IndexedDB exists; private modes may still refuse writes). */
export function canStoreTuning(): boolean {
  return typeof indexedDB !== 'undefined';
}

export function indexedDbTuningStore(): TuningStore {
  return {
    where: (adapter: AdapterIdentity) => `IndexedDB ${TUNING_DB}/${TABLES}/${adapterHash(adapter)}`,
    read: async (adapter) => {
      const text: unknown = await withTables('readonly', (t) => t.get(adapterHash(adapter)));
      if (text === undefined) return null;
      if (typeof text !== 'string') throw new Error('not a text record');
      return text;
    },
    write: async (adapter, text) => {
      await withTables('readwrite', (t) => t.put(text, adapterHash(adapter)));
    },
  };
}
