import socket, time, sys
port=int(sys.argv[1]); n=int(sys.argv[2])
socks=[]
for i in range(n):
    try: socks.append(socket.create_connection(('127.0.0.1',port), timeout=2))
    except Exception as e: print('connect fail at',i,e); break
print('opened',len(socks)); sys.stdout.flush()
time.sleep(float(sys.argv[3]))
