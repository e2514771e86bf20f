; user/embed.asm - the user program's ELF file (user/prog.c, linked by
; user/user.ld) inside the kernel's rodata, between user_image_start and
; user_image_end.  kernel/user.c loads it into each new process.  The
; build passes the directory of prog.elf with -i.

section .rodata.user_image progbits alloc noexec nowrite align=16
global user_image_start
global user_image_end
user_image_start:
    incbin "prog.elf"
user_image_end:
