/*
 * The probe guest: a tiny 64-bit payload that exercises the VMM's boot path and devices without a
 * kernel. Entered like Linux's 64-bit entry (long mode, identity paging, rsi = zero page). It:
 *   0. with "probe.entryspin" on the command line: spins forever right at entry, before any exit
 *      (the host stops the VM),
 *   1. checks the zero page (boot flag, "HdrS", command-line pointer, e820 entries) and echoes the
 *      command line to COM1,
 *   2. writes 0x7b to the boot-timer port 0x440,
 *   3. with "probe.fault" on the command line: loads an empty IDT and executes ud2 (triple fault);
 *      with "probe.int3": installs a #BP handler and executes int3 (which a paravirtual KVM cannot
 *      emulate: the VMM delivers the trap), printing "PROBE int3 handled" from the handler,
 *   4. finds virtio-blk at 0xd0000000 (magic, version 2, device 2), negotiates VERSION_1, sets up
 *      queue 0 in guest memory, reads sector 1 (must start with "CVBPROBE"), prints bytes 8..40 of it,
 *      writes the sector back to sector 2 with "CVBWROTE" in place of the magic, and flushes,
 *   5. prints "CVBENCH READY probe", then resets through i8042 (0xfe to port 0x64), or with
 *      "probe.halt" on the command line halts forever, or with "probe.spin" spins forever in the
 *      guest without an exit (either way the host stops the VM).
 * Only plain integer instructions: it must run under a paravirtual KVM (no SSE4/AVX/xsave; int3
 * only on request).
 */
        .code64
        .set COM1, 0x3f8
        .set LSR, 0x3fd
        .set MMIO, 0xd0000000
        .set DESC, 0x110000
        .set AVAIL, 0x111000
        .set USED, 0x112000
        .set HDR, 0x113000
        .set DATA, 0x114000
        .set STATUS, 0x115000
        .set QSIZE, 8

        .section .text
        .globl _start
_start:
        cli
        mov %rsi, %r15                  /* zero page */
        lea stack_top(%rip), %rsp
        cmpw $0xaa55, 0x1fe(%r15)
        jne zp_fail
        cmpl $0x53726448, 0x202(%r15)
        jne zp_fail
        mov 0x228(%r15), %eax           /* hdr.cmd_line_ptr */
        test %eax, %eax
        jz zp_fail
        cmpb $0, 0x1e8(%r15)            /* e820_entries */
        je zp_fail
        mov %rax, %r14                  /* command line */
        mov %r14, %rdi
        lea flag_entryspin(%rip), %rsi
        call contains
        test %eax, %eax
        jnz spin_forever
        lea msg_zp_ok(%rip), %rdi
        call puts
        lea msg_cmdline(%rip), %rdi
        call puts
        mov %r14, %rdi
        call puts
        lea msg_nl(%rip), %rdi
        call puts

        mov $0x7b, %al                  /* boot timer */
        mov $0x440, %dx
        out %al, %dx

        mov %r14, %rdi
        lea flag_fault(%rip), %rsi
        call contains
        test %eax, %eax
        jnz do_fault

        mov %r14, %rdi
        lea flag_int3(%rip), %rsi
        call contains
        test %eax, %eax
        jz 1f
        call int3_test
1:
        call virtio_init
        test %eax, %eax
        jnz virtio_fail

        /* Read sector 1. */
        mov $0, %edi
        mov $1, %esi
        mov $2, %edx                    /* data buffer device-writable */
        call blk_request
        test %eax, %eax
        jnz read_fail
        mov DATA, %rax
        cmp magic_probe(%rip), %rax
        jne magic_fail
        lea msg_sector(%rip), %rdi
        call puts
        mov $DATA+8, %rdi
        mov $32, %ecx
        call putn
        lea msg_nl(%rip), %rdi
        call puts

        /* Write it back to sector 2 with the magic replaced, then flush. */
        mov magic_wrote(%rip), %rax
        mov %rax, DATA
        mov $1, %edi
        mov $2, %esi
        xor %edx, %edx
        call blk_request
        test %eax, %eax
        jnz write_fail
        mov $4, %edi
        xor %esi, %esi
        xor %edx, %edx
        call blk_request
        test %eax, %eax
        jnz write_fail
        lea msg_blk_ok(%rip), %rdi
        call puts
        lea msg_ready(%rip), %rdi
        call puts

        mov %r14, %rdi
        lea flag_halt(%rip), %rsi
        call contains
        test %eax, %eax
        jnz halt_forever
        mov %r14, %rdi
        lea flag_spin(%rip), %rsi
        call contains
        test %eax, %eax
        jnz spin_forever
reset:
        mov $0xfe, %al
        mov $0x64, %dx
        out %al, %dx
halt_forever:
        cli
        hlt
        jmp halt_forever

spin_forever:
        cli
1:      jmp 1b

do_fault:
        lea msg_fault(%rip), %rdi
        call puts
        lidt null_idt(%rip)
        ud2
        jmp halt_forever

zp_fail:
        lea msg_zp_fail(%rip), %rdi
        call puts
        jmp reset
virtio_fail:
        mov %al, fail_step(%rip)
        lea msg_virtio_fail(%rip), %rdi
        call puts
        jmp reset
read_fail:
        lea msg_read_fail(%rip), %rdi
        call puts
        jmp reset
magic_fail:
        lea msg_magic_fail(%rip), %rdi
        call puts
        jmp reset
write_fail:
        lea msg_write_fail(%rip), %rdi
        call puts
        jmp reset

/* int3_test: installs an IDT whose vector 3 is bp_handler, executes int3, prints after return. */
int3_test:
        lea bp_handler(%rip), %rax
        lea idt(%rip), %rdi
        mov %ax, 48(%rdi)               /* gate 3 = idt + 3*16: offset 15:0 */
        movw $0x08, 50(%rdi)            /* code selector */
        movb $0, 52(%rdi)               /* IST */
        movb $0x8e, 53(%rdi)            /* present, DPL 0, 64-bit interrupt gate */
        shr $16, %rax
        mov %ax, 54(%rdi)               /* offset 31:16 */
        shr $16, %rax
        mov %eax, 56(%rdi)              /* offset 63:32 */
        movl $0, 60(%rdi)
        lea idtr(%rip), %rax
        mov %rdi, 2(%rax)
        lidt (%rax)
        int3
        lea msg_int3_back(%rip), %rdi
        call puts
        ret

bp_handler:
        push %rax
        push %rdx
        push %rdi
        lea msg_int3(%rip), %rdi
        call puts
        pop %rdi
        pop %rdx
        pop %rax
        iretq

/* putc: %al to COM1 once the transmitter holding register is empty. Clobbers %rdx. */
putc:
        push %rax
1:      mov $LSR, %dx
        in %dx, %al
        test $0x20, %al
        jz 1b
        pop %rax
        mov $COM1, %dx
        out %al, %dx
        ret

/* puts: NUL-terminated string at %rdi. Clobbers %rax, %rdx, %rdi. */
puts:
1:      movb (%rdi), %al
        test %al, %al
        jz 2f
        call putc
        inc %rdi
        jmp 1b
2:      ret

/* putn: %ecx bytes at %rdi. Clobbers %rax, %rcx, %rdx, %rdi. */
putn:
1:      test %ecx, %ecx
        jz 2f
        movb (%rdi), %al
        call putc
        inc %rdi
        dec %ecx
        jmp 1b
2:      ret

/* contains: 1 in %eax if the NUL-terminated string %rsi occurs in %rdi. Clobbers %rcx, %rdx, %r8. */
contains:
1:      xor %ecx, %ecx
2:      movb (%rsi,%rcx), %dl
        test %dl, %dl
        jz 3f                           /* whole needle matched */
        movb (%rdi,%rcx), %r8b
        test %r8b, %r8b
        jz 4f                           /* haystack ended */
        cmp %dl, %r8b
        jne 5f
        inc %ecx
        jmp 2b
5:      inc %rdi
        jmp 1b
3:      mov $1, %eax
        ret
4:      xor %eax, %eax
        ret

/* virtio_init: 0 in %eax on success, else the ASCII letter of the failed step. Uses %rbx. */
virtio_init:
        mov $MMIO, %ebx
        mov $'m', %ecx
        cmpl $0x74726976, 0x00(%rbx)
        jne 9f
        mov $'v', %ecx
        cmpl $2, 0x04(%rbx)
        jne 9f
        mov $'d', %ecx
        cmpl $2, 0x08(%rbx)
        jne 9f
        movl $0, 0x70(%rbx)             /* reset */
        movl $1, 0x70(%rbx)             /* ACKNOWLEDGE */
        movl $3, 0x70(%rbx)             /* DRIVER */
        movl $1, 0x14(%rbx)             /* device features, high word */
        mov $'f', %ecx
        movl 0x10(%rbx), %eax
        test $1, %eax                   /* VIRTIO_F_VERSION_1 (bit 32) */
        jz 9f
        movl $0, 0x24(%rbx)
        movl $0, 0x20(%rbx)
        movl $1, 0x24(%rbx)
        movl $1, 0x20(%rbx)
        movl $0xb, 0x70(%rbx)           /* FEATURES_OK */
        mov $'s', %ecx
        movl 0x70(%rbx), %eax
        test $8, %eax
        jz 9f
        movl $0, 0x30(%rbx)             /* queue 0 */
        mov $'q', %ecx
        movl 0x34(%rbx), %eax
        cmp $QSIZE, %eax
        jb 9f
        movl $QSIZE, 0x38(%rbx)
        movl $DESC, 0x80(%rbx)
        movl $0, 0x84(%rbx)
        movl $AVAIL, 0x90(%rbx)
        movl $0, 0x94(%rbx)
        movl $USED, 0xa0(%rbx)
        movl $0, 0xa4(%rbx)
        movl $1, 0x44(%rbx)             /* queue ready */
        movl $0xf, 0x70(%rbx)           /* DRIVER_OK */
        mov $'o', %ecx
        movl 0x70(%rbx), %eax
        cmp $0xf, %eax
        jne 9f
        xor %eax, %eax
        ret
9:      mov %ecx, %eax
        ret

/*
 * blk_request: type %edi, sector %rsi, data descriptor flags %edx (2 = device-writable). A FLUSH
 * (type 4) chains header -> status only. Returns the status byte in %eax (0xfe if never completed).
 */
blk_request:
        movl %edi, HDR
        movl $0, HDR+4
        movq %rsi, HDR+8
        movb $0xff, STATUS
        movq $HDR, DESC
        movl $16, DESC+8
        movw $1, DESC+12                /* NEXT */
        movw $1, DESC+14
        cmp $4, %edi
        jne 1f
        movw $2, DESC+14                /* flush: header -> status */
1:      movq $DATA, DESC+16
        movl $512, DESC+24
        or $1, %edx
        movw %dx, DESC+28
        movw $2, DESC+30
        movq $STATUS, DESC+32
        movl $1, DESC+40
        movw $2, DESC+44                /* WRITE */
        movw $0, DESC+46
        movzwl AVAIL+2, %eax
        mov %eax, %ecx
        and $(QSIZE-1), %ecx
        movw $0, AVAIL+4(,%rcx,2)       /* head descriptor 0 */
        inc %eax
        mfence
        movw %ax, AVAIL+2
        mfence
        mov $MMIO, %ebx
        movl $0, 0x50(%rbx)             /* QueueNotify(0) */
        mov $400000000, %ecx            /* completions come from the VMM's I/O thread: wait long */
2:      movzwl USED+2, %edx
        cmp %ax, %dx
        je 3f
        pause
        dec %ecx
        jnz 2b
        mov $0xfe, %eax
        ret
3:      movzbl STATUS, %eax
        ret

        .section .rodata
magic_probe:    .ascii "CVBPROBE"
magic_wrote:    .ascii "CVBWROTE"
msg_zp_ok:      .asciz "PROBE zeropage ok\n"
msg_zp_fail:    .asciz "PROBE FAIL zeropage\n"
msg_cmdline:    .asciz "PROBE cmdline "
msg_nl:         .asciz "\n"
msg_fault:      .asciz "PROBE triple-faulting now\n"
msg_sector:     .asciz "PROBE sector1 "
msg_blk_ok:     .asciz "PROBE virtio-blk ok\n"
msg_ready:      .asciz "CVBENCH READY probe\n"
msg_read_fail:  .asciz "PROBE FAIL read\n"
msg_magic_fail: .asciz "PROBE FAIL magic\n"
msg_write_fail: .asciz "PROBE FAIL write\n"
flag_fault:     .asciz "probe.fault"
flag_halt:      .asciz "probe.halt"
flag_spin:      .asciz "probe.spin"
flag_entryspin: .asciz "probe.entryspin"
flag_int3:      .asciz "probe.int3"
msg_int3:       .asciz "PROBE int3 handled\n"
msg_int3_back:  .asciz "PROBE int3 returned\n"
null_idt:       .word 0
                .quad 0

        .section .data
msg_virtio_fail: .ascii "PROBE FAIL virtio "
fail_step:      .ascii "?"
                .asciz "\n"

        .balign 16
idt:    .skip 4 * 16
idtr:   .word 4 * 16 - 1
        .quad 0

        .section .bss
        .balign 16
stack:  .skip 4096
stack_top:
