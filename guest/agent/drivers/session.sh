# sbx session driver for bash (docs/guest.md, "Sessions"). fd 3: request
# lines (paths of code files); fd 4: one status line per request. The code
# is sourced into this shell, so variables, functions, exports and the
# working directory persist; "exit" ends the shell (the agent restarts it).
exec {__sbx_req}<&3 {__sbx_done}>&4 3<&- 4>&-
# A request line is "CODE_PATH" or "CODE_PATH<TAB>ENV_PATH"; the env file
# holds NUL-separated KEY=VALUE entries for this exec, exported first.
while IFS=$'\t' builtin read -r __sbx_path __sbx_env <&"$__sbx_req"; do
        if [[ -n $__sbx_env ]]; then
                while IFS= builtin read -r -d '' __sbx_kv; do
                        builtin export "$__sbx_kv"
                done <"$__sbx_env"
        fi
        # $RANDOM was seeded when this shell started, which may have been in a
        # memory snapshot that other VMs restore too: reseed it from the kernel.
        RANDOM=$SRANDOM
        builtin source "$__sbx_path" {__sbx_req}<&- {__sbx_done}>&-
        builtin printf '%d\n' "$?" >&"$__sbx_done"
done
exit 0
