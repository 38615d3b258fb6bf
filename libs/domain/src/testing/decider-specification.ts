import { Decider, DomainEvent, fold } from '../decider';
import { DomainError, DomainErrorKind } from '../domain-error';

/** given(events) / when(command) / then(events) for deciders, after Emmett's DeciderSpecification. */
export function deciderSpecification<C, E extends DomainEvent, S>(decider: Decider<C, E, S>) {
  return {
    given(events: E[]) {
      return {
        when(command: C) {
          const run = () => decider.decide(command, fold(decider, events));
          return {
            then(expected: E[]) {
              expect(run()).toEqual(expected);
            },
            thenNothingHappens() {
              expect(run()).toEqual([]);
            },
            thenThrows(kind: DomainErrorKind, parameter?: string) {
              let error: unknown;
              try {
                run();
              } catch (e) {
                error = e;
              }
              expect(error).toBeInstanceOf(DomainError);
              expect((error as DomainError).kind).toBe(kind);
              if (parameter !== undefined) expect((error as DomainError).parameter).toBe(parameter);
            },
          };
        },
      };
    },
  };
}
