# sbx session driver for bash (docs/guest.md, "Sessions"). fd 3: request
# lines (paths of code files); fd 4: one status line per request. The code
# is sourced into this shell, so variables, functions, exports and the
# working directory persist; "exit" ends the shell (the agent restarts it).
exec {__sbx_req}<&3 {__sbx_done}>&4 3<&- 4>&-
while builtin read -r __sbx_path <&"$__sbx_req"; do
        builtin source "$__sbx_path" {__sbx_req}<&- {__sbx_done}>&-
        builtin printf '%d\n' "$?" >&"$__sbx_done"
done
exit 0
